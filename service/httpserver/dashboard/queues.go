package dashboard

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/queued-dev/queued/service"
)

// queueControls is how the pages show a queue's settings.
type queueControls struct {
	Paused bool
	Limit  string // "20 / 500ms"; "" when unlimited
}

func controlsOf(st service.QueueSettings) queueControls {
	c := queueControls{Paused: st.Paused}
	if st.Limit.Limited() {
		c.Limit = fmt.Sprintf("%d / %s", st.Limit.Max, formatPer(st.Limit.Per))
	}
	return c
}

// formatPer writes a limit's interval the way an operator types it, and
// the way time.ParseDuration reads it back: "500ms", "1s", "2m", "1h".
func formatPer(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	case d < time.Second:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	}
	return d.String()
}

// limitForm is the rate limit form's fields as text.
type limitForm struct{ Max, Per string }

func limitFormOf(l service.RateLimit) limitForm {
	if !l.Limited() {
		return limitForm{}
	}
	return limitForm{Max: strconv.Itoa(l.Max), Per: formatPer(l.Per)}
}

// parse reads the form as the service's RateLimit. What does not parse is
// refused like the service refuses what it does not accept: a
// *service.ValidationError naming the field. An empty max, or 0, clears
// the limit.
func (f limitForm) parse() (service.RateLimit, error) {
	maxText, perText := strings.TrimSpace(f.Max), strings.TrimSpace(f.Per)
	if maxText == "" || maxText == "0" {
		return service.RateLimit{}, nil
	}
	n, err := strconv.Atoi(maxText)
	if err != nil {
		return service.RateLimit{}, &service.ValidationError{Field: "max", Reason: fmt.Sprintf("%q is not a whole number", maxText)}
	}
	if perText == "" {
		return service.RateLimit{}, &service.ValidationError{Field: "per", Reason: `is required with max, e.g. "500ms", "1s" or "1m"`}
	}
	if c := perText[0]; c < '0' || c > '9' {
		perText = "1" + perText // "s" means one second, as in queuectl's "5/s"
	}
	per, err := time.ParseDuration(perText)
	if err != nil {
		return service.RateLimit{}, &service.ValidationError{Field: "per", Reason: fmt.Sprintf(`%q is not a duration like "500ms", "1s" or "1m"`, f.Per)}
	}
	return service.RateLimit{Max: n, Per: per}, nil
}

// queueFlashes are the fixed messages a queue action's redirect may ask
// for; the URL names one, it never carries text to show.
var queueFlashes = map[string]string{
	"paused":        "The queue is paused: no replica hands out its jobs until it is resumed. Jobs already running finish normally.",
	"resumed":       "The queue is resumed: its jobs flow again.",
	"limited":       "The rate limit is set.",
	"limit-cleared": "The rate limit is removed.",
}

// queueActionURL is the path of a queue's action (pause, resume, limit).
func queueActionURL(queue, action string) string {
	return "/queues/" + url.PathEscape(queue) + "/" + action
}

// doneURL is the queue page a successful action redirects to, naming its
// flash message.
func doneURL(queue, done string) string {
	return "/queues/" + url.PathEscape(queue) + "?" + url.Values{"done": {done}}.Encode()
}

// The queue actions, like the job actions, answer a success with a
// redirect and a refusal with the queue page and the reason.

func (d *dashboard) pauseQueue(w http.ResponseWriter, r *http.Request) {
	q := r.PathValue("queue")
	if _, err := d.svc.PauseQueue(r.Context(), q); err != nil {
		d.refusedQueue(w, r, q, nil, err)
		return
	}
	http.Redirect(w, r, doneURL(q, "paused"), http.StatusSeeOther)
}

func (d *dashboard) resumeQueue(w http.ResponseWriter, r *http.Request) {
	q := r.PathValue("queue")
	if _, err := d.svc.ResumeQueue(r.Context(), q); err != nil {
		d.refusedQueue(w, r, q, nil, err)
		return
	}
	http.Redirect(w, r, doneURL(q, "resumed"), http.StatusSeeOther)
}

func (d *dashboard) limitQueue(w http.ResponseWriter, r *http.Request) {
	q := r.PathValue("queue")
	form := limitForm{Max: r.PostFormValue("max"), Per: r.PostFormValue("per")}
	limit, err := form.parse()
	if err == nil {
		_, err = d.svc.SetRateLimit(r.Context(), q, limit)
	}
	if err != nil {
		d.refusedQueue(w, r, q, &form, err)
		return
	}
	done := "limited"
	if !limit.Limited() {
		done = "limit-cleared"
	}
	http.Redirect(w, r, doneURL(q, done), http.StatusSeeOther)
}

// refusedQueue shows the queue page with the reason an action was refused
// (and, for the limit form, what the operator typed, to correct it).
func (d *dashboard) refusedQueue(w http.ResponseWriter, r *http.Request, queue string, form *limitForm, err error) {
	code, msg := d.httpStatus(r, err)
	if code != http.StatusBadRequest {
		d.renderError(w, r, code, msg)
		return
	}
	d.showQueue(w, r, queueView{name: queue, code: code, problem: msg, form: form})
}

package dashboard

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/queued-dev/queued/service"
)

// allStates are the states in the order the pages show them: a job's life
// from waiting to finished.
var allStates = []service.JobState{
	service.StateScheduled, service.StateAvailable, service.StateRunning, service.StateWaitingChildren,
	service.StateCompleted, service.StateFailed, service.StateCancelled,
}

// stateCount is one state's figure in a table or a tab.
type stateCount struct {
	State  service.JobState
	Count  int64
	Capped bool // at least Count (the finished count stopped at its cap)
}

type queueRow struct {
	Name   string
	Counts []stateCount
	Lag    string // "" when nothing is available
	queueControls
}

type overviewPage struct {
	basePage
	States []service.JobState
	Queues []queueRow
}

func (d *dashboard) overview(w http.ResponseWriter, r *http.Request) {
	qs, now, err := d.svc.ListQueues(r.Context())
	if err != nil {
		d.fail(w, r, err)
		return
	}
	settings, err := d.svc.ListQueueSettings(r.Context())
	if err != nil {
		d.fail(w, r, err)
		return
	}
	p := overviewPage{basePage: d.base(r, "Queues"), States: allStates}
	p.Refresh = true
	p.Queues = overviewRows(qs, settings, now)
	d.render(w, r, http.StatusOK, "overview", p)
}

// overviewRows joins the queues holding jobs with the queues' settings. A
// queue that is paused or limited but holds no jobs gets a row too: an
// operator who paused it must see that it is paused.
func overviewRows(qs []service.QueueOverview, settings []service.QueueInfo, now time.Time) []queueRow {
	byName := make(map[string]service.QueueSettings, len(settings))
	for _, st := range settings {
		byName[st.Queue] = st.QueueSettings
	}
	rows := make([]queueRow, 0, len(qs))
	seen := make(map[string]bool, len(qs))
	for _, q := range qs {
		seen[q.Queue] = true
		rows = append(rows, queueRow{Name: q.Queue, Counts: countsOf(q), Lag: lagOf(q, now), queueControls: controlsOf(byName[q.Queue])})
	}
	for _, st := range settings {
		if seen[st.Queue] || !(st.Paused || st.Limit.Limited()) {
			continue
		}
		empty := service.QueueOverview{Queue: st.Queue, Counts: map[service.JobState]int64{}}
		rows = append(rows, queueRow{Name: st.Queue, Counts: countsOf(empty), queueControls: controlsOf(st.QueueSettings)})
	}
	slices.SortFunc(rows, func(a, b queueRow) int { return strings.Compare(a.Name, b.Name) })
	return rows
}

func countsOf(q service.QueueOverview) []stateCount {
	out := make([]stateCount, len(allStates))
	for i, st := range allStates {
		out[i] = stateCount{State: st, Count: q.Counts[st], Capped: q.FinishedCapped && st.Terminal() && q.Counts[st] >= service.FinishedCountCap}
	}
	return out
}

func lagOf(q service.QueueOverview, now time.Time) string {
	if q.OldestAvailableAt.IsZero() {
		return ""
	}
	return humanDuration(now.Sub(q.OldestAvailableAt))
}

type queuePage struct {
	basePage
	Queue string
	State service.JobState // "" for every state
	Tabs  []stateCount
	Total int64
	Lag   string
	Jobs  []jobRow
	// NextURL continues the listing; FirstURL goes back to its start.
	NextURL, FirstURL string
	queueControls
	// Form is what the rate limit form shows: the current limit, or what
	// the operator typed when it was refused.
	Form           limitForm
	Flash, Problem string
}

type jobRow struct {
	service.Job
	Age       string
	LastError string
}

func (d *dashboard) queue(w http.ResponseWriter, r *http.Request) {
	state := service.JobState(r.URL.Query().Get("state"))
	if state != "" && !validState(state) {
		d.renderError(w, r, http.StatusBadRequest, fmt.Sprintf("Unknown state %q.", state))
		return
	}
	d.showQueue(w, r, queueView{
		name: r.PathValue("queue"), state: state, code: http.StatusOK,
		flash: queueFlashes[r.URL.Query().Get("done")],
	})
}

// queueView is what showQueue renders: the page as a GET shows it, or
// (code, problem, form) as a refused action leaves it.
type queueView struct {
	name    string
	state   service.JobState
	code    int
	flash   string
	problem string
	form    *limitForm // nil: the current limit
}

func (d *dashboard) showQueue(w http.ResponseWriter, r *http.Request, v queueView) {
	name, state := v.name, v.state
	info, err := d.svc.GetQueue(r.Context(), name)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	p := queuePage{basePage: d.base(r, "Queue "+name), Queue: name, State: state, Flash: v.flash, Problem: v.problem}
	p.queueControls = controlsOf(info.QueueSettings)
	p.Form = limitFormOf(info.Limit)
	if v.form != nil {
		p.Form = *v.form
	}
	// A refused action's page sits at the action's URL, which a refresh
	// cannot load.
	p.Refresh = v.problem == ""
	qs, now, err := d.svc.ListQueues(r.Context())
	if err != nil {
		d.fail(w, r, err)
		return
	}
	p.Tabs = countsOf(service.QueueOverview{Counts: map[service.JobState]int64{}})
	for _, q := range qs {
		if q.Queue == name {
			p.Tabs = countsOf(q)
			p.Lag = lagOf(q, now)
		}
	}
	for _, t := range p.Tabs {
		p.Total += t.Count
	}
	lp := service.ListJobsParams{Filter: service.JobFilter{Queue: name}, Limit: PageSize, PageToken: r.URL.Query().Get("page")}
	if state != "" {
		lp.Filter.States = []service.JobState{state}
	}
	page, err := d.svc.ListJobs(r.Context(), lp)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	for _, j := range page.Jobs {
		p.Jobs = append(p.Jobs, jobRow{Job: j, Age: ago(now, j.CreatedAt), LastError: lastError(j)})
	}
	p.FirstURL = queueURL(name, state, "")
	if page.NextPageToken != "" {
		p.NextURL = queueURL(name, state, page.NextPageToken)
	}
	d.render(w, r, v.code, "queue", p)
}

func queueURL(queue string, state service.JobState, token string) string {
	v := url.Values{}
	if state != "" {
		v.Set("state", string(state))
	}
	if token != "" {
		v.Set("page", token)
	}
	u := "/queues/" + url.PathEscape(queue)
	if len(v) > 0 {
		u += "?" + v.Encode()
	}
	return u
}

func validState(st service.JobState) bool {
	for _, s := range allStates {
		if s == st {
			return true
		}
	}
	return false
}

func lastError(j service.Job) string {
	if len(j.Errors) == 0 {
		return ""
	}
	return j.Errors[len(j.Errors)-1].Message
}

type jobPage struct {
	basePage
	Job      service.Job
	Payload  shownBytes
	Result   shownBytes
	Progress shownBytes
	Errors   []shownError
	Children []service.Job
	Times    []labelled
	// Actions the job's state allows.
	CanRetry, CanCancel, CanDelete bool
	Flash, Problem                 string
}

type labelled struct{ Label, Value, Title string }

type shownError struct {
	Attempt int32
	Message string
	At      string
}

func (d *dashboard) job(w http.ResponseWriter, r *http.Request) {
	id, ok := d.jobID(w, r)
	if !ok {
		return
	}
	d.showJob(w, r, id, http.StatusOK, flashes[r.URL.Query().Get("done")], "")
}

// flashes are the fixed messages an action's redirect may ask for; the
// URL names one, it never carries text to show.
var flashes = map[string]string{
	"retried":   "The job was retried: it is available again with a fresh set of attempts.",
	"cancelled": "The job was cancelled.",
}

func (d *dashboard) showJob(w http.ResponseWriter, r *http.Request, id int64, code int, flash, problem string) {
	j, err := d.svc.GetJob(r.Context(), id)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	now := d.now()
	p := jobPage{basePage: d.base(r, fmt.Sprintf("Job %d", j.ID)), Job: j, Flash: flash, Problem: problem}
	p.Refresh = !j.State.Terminal()
	p.Payload = showBytes(j.Payload)
	p.Result = showBytes(j.Result)
	p.Progress = showBytes(j.Progress)
	for _, e := range j.Errors {
		p.Errors = append(p.Errors, shownError{Attempt: e.Attempt, Message: e.Message, At: stamp(e.At)})
	}
	for _, t := range []struct {
		label string
		at    time.Time
	}{{"Created", j.CreatedAt}, {"Runs at", j.RunAt}, {"Started", j.StartedAt}, {"Finished", j.FinishedAt}, {"Lease expires", j.LeaseExpiresAt}} {
		if !t.at.IsZero() {
			p.Times = append(p.Times, labelled{Label: t.label, Value: ago(now, t.at), Title: stamp(t.at)})
		}
	}
	if j.Flow.ChildCount > 0 {
		if tree, err := d.svc.GetFlow(r.Context(), j.ID); err == nil {
			if node := findNode(tree, j.ID); node != nil {
				for _, c := range node.Children {
					p.Children = append(p.Children, c.Job)
				}
			}
		} else {
			d.log.WarnContext(r.Context(), "dashboard: read flow", "job_id", j.ID, "err", err)
		}
	}
	p.CanRetry = (j.State == service.StateFailed || j.State == service.StateCancelled) && j.Flow.ParentID == 0
	p.CanCancel = !j.State.Terminal()
	p.CanDelete = j.State.Terminal()
	d.render(w, r, code, "job", p)
}

func findNode(t *service.FlowTree, id int64) *service.FlowTree {
	if t == nil {
		return nil
	}
	if t.Job.ID == id {
		return t
	}
	for _, c := range t.Children {
		if n := findNode(c, id); n != nil {
			return n
		}
	}
	return nil
}

func (d *dashboard) jobID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		d.renderError(w, r, http.StatusBadRequest, "A job id is a positive number.")
		return 0, false
	}
	return id, true
}

// The actions answer a success with a redirect (POST/redirect/GET, so a
// reload does not repeat them) and a refusal with the job page and the
// reason.

func (d *dashboard) retry(w http.ResponseWriter, r *http.Request) {
	id, ok := d.jobID(w, r)
	if !ok {
		return
	}
	if _, err := d.svc.RetryJob(r.Context(), id); err != nil {
		d.refused(w, r, id, err)
		return
	}
	http.Redirect(w, r, fmt.Sprintf("/jobs/%d?done=retried", id), http.StatusSeeOther)
}

func (d *dashboard) cancel(w http.ResponseWriter, r *http.Request) {
	id, ok := d.jobID(w, r)
	if !ok {
		return
	}
	if _, err := d.svc.CancelJob(r.Context(), id, "cancelled from the dashboard"); err != nil {
		d.refused(w, r, id, err)
		return
	}
	http.Redirect(w, r, fmt.Sprintf("/jobs/%d?done=cancelled", id), http.StatusSeeOther)
}

func (d *dashboard) delete(w http.ResponseWriter, r *http.Request) {
	id, ok := d.jobID(w, r)
	if !ok {
		return
	}
	// The queue to go back to; read first, since the job will be gone.
	j, err := d.svc.GetJob(r.Context(), id)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	st, err := d.svc.DeleteJob(r.Context(), id)
	if err != nil {
		d.refused(w, r, id, err)
		return
	}
	http.Redirect(w, r, queueURL(j.Queue, st, ""), http.StatusSeeOther)
}

func (d *dashboard) refused(w http.ResponseWriter, r *http.Request, id int64, err error) {
	code, msg := d.httpStatus(r, err)
	if code == http.StatusNotFound || code >= 500 {
		d.renderError(w, r, code, msg)
		return
	}
	d.showJob(w, r, id, code, "", msg)
}

func (d *dashboard) fail(w http.ResponseWriter, r *http.Request, err error) {
	code, msg := d.httpStatus(r, err)
	d.renderError(w, r, code, msg)
}

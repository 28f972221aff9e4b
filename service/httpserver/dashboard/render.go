package dashboard

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/queued-dev/queued/service"
)

// basePage is what the layout needs on every page.
type basePage struct {
	Title string
	Path  string
	// Refresh turns on the page's auto-refresh (the operator can switch
	// it off); RefreshMS is its period.
	Refresh   bool
	RefreshMS int64
}

func (d *dashboard) base(r *http.Request, title string) basePage {
	return basePage{Title: title, Path: r.URL.Path, RefreshMS: d.refresh.Milliseconds()}
}

type errorPage struct {
	basePage
	Code    int
	Message string
}

var funcs = template.FuncMap{
	"stateClass":  func(st service.JobState) string { return "state-" + strings.ReplaceAll(string(st), "_", "-") },
	"stateLabel":  func(st service.JobState) string { return strings.ReplaceAll(string(st), "_", " ") },
	"queueURL":    func(q string, st service.JobState) string { return queueURL(q, st, "") },
	"queueAction": queueActionURL,
	"number":      number,
	"stamp":       stamp,
	"int64":       func(n int) int64 { return int64(n) },
	"dict": func(kv ...any) map[string]any {
		m := make(map[string]any, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	},
	"truncate": func(n int, s string) string {
		if utf8.RuneCountInString(s) <= n {
			return s
		}
		return string([]rune(s)[:n]) + "…"
	},
}

func (d *dashboard) parseTemplates() error {
	d.pages = map[string]*template.Template{}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return fmt.Errorf("parse dashboard layout: %w", err)
	}
	for _, name := range []string{"overview", "queue", "job", "error"} {
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("parse dashboard page %s: %w", name, err)
		}
		d.pages[name] = t
	}
	return nil
}

// render writes a page; it renders into a buffer first, so a template
// error becomes a 500 rather than half a page.
func (d *dashboard) render(w http.ResponseWriter, r *http.Request, code int, page string, data any) {
	var buf bytes.Buffer
	if err := d.pages[page].ExecuteTemplate(&buf, "layout.html", data); err != nil {
		d.log.ErrorContext(r.Context(), "dashboard: render", slog.String("page", page), slog.Any("err", err))
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

func (d *dashboard) renderError(w http.ResponseWriter, r *http.Request, code int, msg string) {
	d.render(w, r, code, "error", errorPage{basePage: d.base(r, http.StatusText(code)), Code: code, Message: msg})
}

// shownBytes is a payload, result or progress as the job page shows it:
// indented JSON, else text, else a hex dump. It is always shown as text
// (html/template escapes it), never interpreted as markup.
type shownBytes struct {
	Kind string // "json", "text", "binary" or "" when empty
	Text string
	Size int
}

// maxShownBytes bounds what a page shows of one value.
const maxShownBytes = 64 << 10

func showBytes(b []byte) shownBytes {
	if len(b) == 0 {
		return shownBytes{}
	}
	s := shownBytes{Size: len(b)}
	var buf bytes.Buffer
	switch {
	case json.Valid(b) && json.Indent(&buf, b, "", "  ") == nil:
		s.Kind, s.Text = "json", buf.String()
	case utf8.Valid(b):
		s.Kind, s.Text = "text", string(b)
	default:
		if len(b) > maxShownBytes/4 {
			b = b[:maxShownBytes/4]
		}
		s.Kind, s.Text = "binary", hex.Dump(b)
	}
	if len(s.Text) > maxShownBytes {
		s.Text = strings.ToValidUTF8(s.Text[:maxShownBytes], "") + "\n… (truncated)"
	}
	return s
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000 UTC") }

// ago says how far t is from now in the past or future, e.g. "3m ago".
func ago(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	if d < 0 {
		return "in " + humanDuration(-d)
	}
	if d < time.Second {
		return "just now"
	}
	return humanDuration(d) + " ago"
}

func humanDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}

// number formats n with thousands separators.
func number(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + number(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

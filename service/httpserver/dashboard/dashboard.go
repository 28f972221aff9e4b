// Package dashboard is queued's web dashboard: server-rendered pages (a
// queue overview, a queue's jobs by state, a job's detail) and the actions
// an operator takes on a job (retry, cancel, delete) or a queue (pause,
// resume, set or clear its rate limit). It calls the service,
// never the store, so it shows exactly what the gRPC API would.
//
// It has no authentication: serve it on a private address or behind an
// authenticating proxy. State-changing requests are POST forms guarded by
// net/http's CrossOriginProtection (Sec-Fetch-Site, else Origin against
// Host), so another site cannot make an operator's browser press a button.
package dashboard

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/queued-dev/queued/service"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Service is what the dashboard needs of the service; *service.Service is
// one.
type Service interface {
	ListQueues(ctx context.Context) ([]service.QueueOverview, time.Time, error)
	ListJobs(ctx context.Context, p service.ListJobsParams) (service.JobPage, error)
	GetJob(ctx context.Context, id int64) (service.Job, error)
	GetFlow(ctx context.Context, id int64) (*service.FlowTree, error)
	RetryJob(ctx context.Context, id int64) (service.Job, error)
	CancelJob(ctx context.Context, id int64, reason string) (service.Job, error)
	DeleteJob(ctx context.Context, id int64) (service.JobState, error)
	GetQueue(ctx context.Context, queue string) (service.QueueInfo, error)
	ListQueueSettings(ctx context.Context) ([]service.QueueInfo, error)
	PauseQueue(ctx context.Context, queue string) (service.QueueInfo, error)
	ResumeQueue(ctx context.Context, queue string) (service.QueueInfo, error)
	SetRateLimit(ctx context.Context, queue string, limit service.RateLimit) (service.QueueInfo, error)
}

var _ Service = (*service.Service)(nil)

// Config configures the dashboard.
type Config struct {
	Service Service
	Logger  *slog.Logger     // nil discards
	Now     func() time.Time // nil means time.Now; only for "ago" texts
	// RefreshInterval is how often pages refresh themselves while the
	// operator leaves auto-refresh on; 0 means RefreshIntervalDefault.
	RefreshInterval time.Duration
}

// RefreshIntervalDefault is the pages' auto-refresh period.
const RefreshIntervalDefault = 3 * time.Second

// PageSize is how many jobs a queue page lists.
const PageSize = 50

type dashboard struct {
	svc     Service
	log     *slog.Logger
	now     func() time.Time
	refresh time.Duration
	pages   map[string]*template.Template
}

// Handler returns the dashboard's handler. It serves GET /, /queues/{queue},
// /jobs/{id} and /static/..., POST /jobs/{id}/{retry,cancel,delete} and
// POST /queues/{queue}/{pause,resume,limit};
// mount it at "/" beside the health and metrics routes.
func Handler(cfg Config) (http.Handler, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = RefreshIntervalDefault
	}
	d := &dashboard{svc: cfg.Service, log: cfg.Logger, now: cfg.Now, refresh: cfg.RefreshInterval}
	if err := d.parseTemplates(); err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", d.overview)
	mux.HandleFunc("GET /queues/{queue}", d.queue)
	mux.HandleFunc("GET /jobs/{id}", d.job)
	mux.HandleFunc("POST /jobs/{id}/retry", d.retry)
	mux.HandleFunc("POST /jobs/{id}/cancel", d.cancel)
	mux.HandleFunc("POST /jobs/{id}/delete", d.delete)
	mux.HandleFunc("POST /queues/{queue}/pause", d.pauseQueue)
	mux.HandleFunc("POST /queues/{queue}/resume", d.resumeQueue)
	mux.HandleFunc("POST /queues/{queue}/limit", d.limitQueue)
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		d.renderError(w, r, http.StatusNotFound, "No such page.")
	})
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.renderError(w, r, http.StatusForbidden, "Refused: this request came from another site. Use the dashboard's own buttons.")
	}))
	return securityHeaders(csrf.Handler(mux)), nil
}

// securityHeaders forbids inline script and framing: every script and
// style is a file under /static, and a framed dashboard could be
// click-jacked into pressing its buttons.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

// httpStatus maps a domain error to an HTTP status and the message an
// operator sees; it is the dashboard's one error mapping.
func (d *dashboard) httpStatus(r *http.Request, err error) (int, string) {
	var ve *service.ValidationError
	var se *service.StateError
	switch {
	case errors.As(err, &ve):
		return http.StatusBadRequest, ve.Error()
	case errors.As(err, &se):
		return http.StatusConflict, se.Error()
	case errors.Is(err, service.ErrNotFound):
		return http.StatusNotFound, "Not found: it does not exist, or its retention has passed."
	case errors.Is(err, service.ErrAlreadyExists):
		return http.StatusConflict, "Refused: an unfinished job already holds this job's unique key."
	case errors.Is(err, service.ErrFinished):
		return http.StatusConflict, "Refused: the job has already finished."
	case errors.Is(err, service.ErrUnavailable):
		return http.StatusServiceUnavailable, "The database is unavailable; try again shortly."
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "The request was cancelled or timed out."
	}
	d.log.ErrorContext(r.Context(), "dashboard error", slog.String("path", r.URL.Path), slog.Any("err", err))
	return http.StatusInternalServerError, "Internal error; see the server log."
}

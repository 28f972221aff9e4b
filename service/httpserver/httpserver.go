// Package httpserver is queued's HTTP adapter: liveness and readiness for
// orchestrators, Prometheus metrics, and the dashboard's mount point.
package httpserver

import (
	"context"
	"net/http"
	"time"
)

// Checker reports whether the server can do its job right now (the
// database answers, it is not draining).
type Checker func(ctx context.Context) error

// Handler serves /healthz (the process is up) and /readyz (it can serve:
// database reachable and not draining).
func Handler(ready Checker, extra ...func(*http.ServeMux)) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	for _, f := range extra {
		f(mux)
	}
	return mux
}

// Dashboard serves h (service/httpserver/dashboard) for every path the
// other routes leave: "/", "/queues/...", "/jobs/...", "/static/...".
func Dashboard(h http.Handler) func(*http.ServeMux) {
	return func(mux *http.ServeMux) { mux.Handle("/", h) }
}

// Metrics serves h (a Prometheus exposition handler) at GET /metrics.
func Metrics(h http.Handler) func(*http.ServeMux) {
	return func(mux *http.ServeMux) { mux.Handle("GET /metrics", h) }
}

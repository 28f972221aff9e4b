// Command user-service is the producer half of the welcome-email example:
// POST /signup enqueues a send_welcome_email job. The unique key makes a
// double-submitted form send one email, not two.
//
//	curl -X POST localhost:8080/signup -d '{"email":"ada@example.com","name":"Ada"}'
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	queued "github.com/queued-dev/queued/clients/go"
)

// Signup is the job payload; the email worker decodes the same shape.
type Signup struct {
	Email string `json:"email"`
	Name  string `json:"name"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "user-service:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("user-service", flag.ContinueOnError)
	listen := fs.String("listen", envOr(getenv, "USER_SERVICE_ADDR", "127.0.0.1:8080"), "HTTP listen address (USER_SERVICE_ADDR)")
	server := fs.String("server", envOr(getenv, "QUEUED_ADDR", queued.DefaultAddr), "queued address (QUEUED_ADDR)")
	if err := fs.Parse(args); err != nil {
		return err
	}

	client, err := queued.Dial(ctx, *server)
	if err != nil {
		return err
	}
	defer client.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /signup", func(w http.ResponseWriter, r *http.Request) {
		var s Signup
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&s); err != nil || !strings.Contains(s.Email, "@") {
			http.Error(w, `want JSON {"email": "...", "name": "..."}`, http.StatusBadRequest)
			return
		}
		// ... create the user in your database here ...
		job, err := client.EnqueueJSON(r.Context(), "emails", "send_welcome_email", s,
			queued.UniqueKey("welcome-email:"+strings.ToLower(s.Email)),
			queued.MaxAttempts(5),
			queued.Backoff(queued.ExponentialBackoff(time.Second, time.Minute)))
		if err != nil {
			http.Error(w, "could not queue the welcome email: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(map[string]any{"job_id": job.ID, "duplicate": job.Duplicate})
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "user-service listening on http://%s (queued at %s)\n", ln.Addr(), *server)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// Command email-worker is the worker half of the welcome-email example: it
// works send_welcome_email jobs. "Sending" appends a line to a log file. In
// flaky mode the first attempts of each job fail, to show retries with
// backoff.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"

	queued "github.com/queued-dev/queued/clients/go"
)

// Signup is the job payload, as the user service enqueues it.
type Signup struct {
	Email string `json:"email"`
	Name  string `json:"name"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "email-worker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("email-worker", flag.ContinueOnError)
	server := fs.String("server", envOr(getenv, "QUEUED_ADDR", queued.DefaultAddr), "queued address (QUEUED_ADDR)")
	logFile := fs.String("log-file", envOr(getenv, "EMAIL_LOG_FILE", "sent-emails.log"), "where sent emails are logged (EMAIL_LOG_FILE)")
	flaky := fs.Int("flaky", envInt(getenv, "EMAIL_WORKER_FLAKY", 0), "fail the first N attempts of every job (EMAIL_WORKER_FLAKY)")
	concurrency := fs.Int("concurrency", 4, "emails sent at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	out, err := os.OpenFile(*logFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	var outMu sync.Mutex

	client, err := queued.Dial(ctx, *server)
	if err != nil {
		return err
	}
	defer client.Close()

	w := queued.NewWorker(client, queued.WorkerConfig{
		Queues:      []string{"emails"},
		Concurrency: *concurrency,
		Logger:      slog.New(slog.NewTextHandler(stdout, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	queued.HandleJSON(w, "send_welcome_email", func(ctx context.Context, job *queued.Job, s Signup) error {
		if int(job.Attempt) <= *flaky {
			fmt.Fprintf(stdout, "job %d: attempt %d fails on purpose (flaky mode)\n", job.ID, job.Attempt)
			return fmt.Errorf("smtp: 451 try again later (flaky mode, attempt %d)", job.Attempt)
		}
		outMu.Lock()
		defer outMu.Unlock()
		if _, err := fmt.Fprintf(out, "to=%s subject=%q job=%d attempt=%d\n", s.Email, "Welcome, "+s.Name+"!", job.ID, job.Attempt); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "job %d: sent welcome email to %s (attempt %d)\n", job.ID, s.Email, job.Attempt)
		return nil
	})
	fmt.Fprintf(stdout, "email-worker working queue emails on %s, logging to %s\n", *server, *logFile)
	return w.Run(ctx)
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

func envInt(getenv func(string) string, key string, def int) int {
	if v, err := strconv.Atoi(getenv(key)); err == nil {
		return v
	}
	return def
}

// Command queued runs the queued job-queue server.
//
// Every flag has a QUEUED_* environment fallback (flag wins). With no
// database URL, queued starts a private PostgreSQL under the data directory
// and keeps it between runs.
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
	"strings"
	"syscall"
	"time"

	"github.com/queued-dev/queued/internal/app"
	"github.com/queued-dev/queued/service"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "queued:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("queued", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var (
		grpcAddr     = fs.String("grpc-addr", env("QUEUED_GRPC_ADDR", ":7070"), "gRPC listen address (QUEUED_GRPC_ADDR)")
		httpAddr     = fs.String("http-addr", env("QUEUED_HTTP_ADDR", ":7071"), "HTTP address for health, metrics and the dashboard (no login: keep it private); empty disables (QUEUED_HTTP_ADDR)")
		dbURL        = fs.String("database-url", env("QUEUED_DATABASE_URL", ""), "PostgreSQL URL; empty starts a private PostgreSQL in the data dir (QUEUED_DATABASE_URL)")
		dataDir      = fs.String("data-dir", env("QUEUED_DATA_DIR", "./.queued"), "home of the private PostgreSQL (QUEUED_DATA_DIR)")
		maxConns     = fs.Int("db-max-conns", envInt(getenv, "QUEUED_DB_MAX_CONNS", 16), "database pool size (QUEUED_DB_MAX_CONNS)")
		leaseDur     = fs.Duration("lease-duration", envDuration(getenv, "QUEUED_LEASE_DURATION", service.LeaseDurationDefault), "default lease length (QUEUED_LEASE_DURATION)")
		retention    = fs.Duration("retention", envDuration(getenv, "QUEUED_RETENTION", service.RetentionDefault), "how long finished jobs are kept (QUEUED_RETENTION)")
		watchRet     = fs.Duration("watch-retention", envDuration(getenv, "QUEUED_WATCH_RETENTION", 0), "how old a watch cursor may be to resume; 0: an hour or half the retention (QUEUED_WATCH_RETENTION)")
		maxAttempts  = fs.Int("default-max-attempts", envInt(getenv, "QUEUED_DEFAULT_MAX_ATTEMPTS", service.DefaultMaxAttemptsDefault), "attempts for jobs that set none (QUEUED_DEFAULT_MAX_ATTEMPTS)")
		maxPayload   = fs.Int("max-payload-bytes", envInt(getenv, "QUEUED_MAX_PAYLOAD_BYTES", service.MaxPayloadBytesDefault), "largest payload, result or progress (QUEUED_MAX_PAYLOAD_BYTES)")
		drainTimeout = fs.Duration("drain-timeout", envDuration(getenv, "QUEUED_DRAIN_TIMEOUT", app.DrainTimeoutDefault), "how long SIGTERM waits for workers to settle (QUEUED_DRAIN_TIMEOUT)")
		logLevel     = fs.String("log-level", env("QUEUED_LOG_LEVEL", "info"), "debug, info, warn or error (QUEUED_LOG_LEVEL)")
		logFormat    = fs.String("log-format", env("QUEUED_LOG_FORMAT", "text"), "text or json (QUEUED_LOG_FORMAT)")
		replicaID    = fs.String("replica-id", env("QUEUED_REPLICA_ID", hostname()), "name of this replica in logs and lease owners (QUEUED_REPLICA_ID)")
		healthcheck  = fs.Bool("healthcheck", false, "do not serve: ask the server on -http-addr whether it is ready (GET /readyz), exit 0 if so; for container health checks")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *healthcheck {
		return probeReady(ctx, *httpAddr)
	}
	logger, err := newLogger(*logLevel, *logFormat, stderr)
	if err != nil {
		return err
	}
	a, err := app.Start(ctx, app.Config{
		GRPCAddr:     *grpcAddr,
		HTTPAddr:     *httpAddr,
		DatabaseURL:  *dbURL,
		DataDir:      *dataDir,
		MaxConns:     int32(*maxConns),
		DrainTimeout: *drainTimeout,
		Logger:       logger,
		Service: service.Config{
			LeaseDuration:      *leaseDur,
			Retention:          *retention,
			WatchRetention:     *watchRet,
			DefaultMaxAttempts: int32(*maxAttempts),
			MaxPayloadBytes:    *maxPayload,
			ReplicaID:          *replicaID,
		},
	})
	if err != nil {
		return err
	}
	waitErr := a.Wait(ctx)
	logger.Info("shutting down", "drain_timeout", *drainTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), *drainTimeout+30*time.Second)
	defer cancel()
	return errors.Join(waitErr, a.Shutdown(shutdownCtx))
}

func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

func envInt(getenv func(string) string, name string, def int) int {
	if v, err := strconv.Atoi(getenv(name)); err == nil {
		return v
	}
	return def
}

func envDuration(getenv func(string) string, name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(getenv(name)); err == nil {
		return v
	}
	return def
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "queued"
	}
	return h
}

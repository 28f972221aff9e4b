// Package app assembles a queued server from its parts: PostgreSQL (given
// or private), migrations, the service, and the gRPC and HTTP listeners.
// cmd/queued calls it after reading flags; end-to-end tests call it to run
// the very same server on 127.0.0.1:0.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/queued-dev/queued/internal/cronspec"
	"github.com/queued-dev/queued/internal/metrics"
	"github.com/queued-dev/queued/migrations"
	"github.com/queued-dev/queued/service"
	"github.com/queued-dev/queued/service/grpcserver"
	"github.com/queued-dev/queued/service/httpserver"
	"github.com/queued-dev/queued/service/httpserver/dashboard"
	"github.com/queued-dev/queued/store"
	"github.com/queued-dev/queued/store/pglocal"
)

// DrainTimeoutDefault bounds how long shutdown waits for workers to settle
// the jobs they hold.
const DrainTimeoutDefault = 10 * time.Second

// HealthIntervalDefault is how often the database is probed for the gRPC
// health status.
const HealthIntervalDefault = time.Second

// Config is everything a server needs.
type Config struct {
	GRPCAddr    string // e.g. ":7070"; "127.0.0.1:0" picks a port
	HTTPAddr    string // "" disables HTTP
	DatabaseURL string // empty: start a private PostgreSQL in DataDir
	DataDir     string // home of the private PostgreSQL
	MaxConns    int32  // pool size; 0: pgxpool's default
	// DrainTimeout bounds the wait for in-flight work on shutdown.
	DrainTimeout time.Duration
	// HealthInterval is how often the database is probed to set the gRPC
	// health status (0: HealthIntervalDefault).
	HealthInterval time.Duration
	Service        service.Config
	Logger         *slog.Logger
}

// App is a running server.
type App struct {
	cfg     Config
	log     *slog.Logger
	pg      *pglocal.Cluster // nil when DatabaseURL was given
	pool    *pgxpool.Pool
	svc     *service.Service
	grpc    *grpc.Server
	health  *health.Server
	metrics *metrics.Metrics
	http    *http.Server
	grpcLis net.Listener
	httpLis net.Listener

	cancelSvc  context.CancelFunc
	svcDone    chan error
	healthDone chan struct{}
	serveErr   chan error
	stopOnce   sync.Once
	stopErr    error
}

// Start brings a server up and returns once it is listening.
func Start(ctx context.Context, cfg Config) (_ *App, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = DrainTimeoutDefault
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = HealthIntervalDefault
	}
	a := &App{cfg: cfg, log: cfg.Logger, serveErr: make(chan error, 2)}
	defer func() {
		if err != nil {
			if a.cancelSvc != nil { // the service runs: stop it first
				a.cancelSvc()
				<-a.svcDone
				if a.healthDone != nil {
					<-a.healthDone
				}
			}
			a.release()
		}
	}()

	dbURL := cfg.DatabaseURL
	if dbURL == "" {
		if cfg.DataDir == "" {
			return nil, errors.New("either a database URL or a data directory is required")
		}
		a.pg, err = pglocal.Start(ctx, pglocal.Options{DataDir: cfg.DataDir + "/postgres"})
		if err != nil {
			return nil, fmt.Errorf("start private PostgreSQL: %w", err)
		}
		if err := ensureDatabase(ctx, a.pg.URL("postgres"), "queued"); err != nil {
			return nil, err
		}
		dbURL = a.pg.URL("queued")
		a.log.Info("using a private PostgreSQL", "data_dir", a.pg.DataDir(), "port", a.pg.Port(), "url", dbURL)
	}
	poolCfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	if cfg.MaxConns > 0 {
		poolCfg.MaxConns = cfg.MaxConns
	} else if poolCfg.MaxConns < 16 {
		poolCfg.MaxConns = 16
	}
	a.pool, err = pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	if err := waitForDatabase(ctx, a.pool, a.log); err != nil {
		return nil, err
	}
	if err := migrations.Apply(ctx, a.pool); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}

	svcCfg := cfg.Service
	if svcCfg.Logger == nil {
		svcCfg.Logger = a.log
	}
	if svcCfg.ParseCron == nil {
		svcCfg.ParseCron = ParseCron
	}
	st := store.New(a.pool)
	a.metrics = metrics.New()
	a.metrics.WatchPool(a.pool)
	a.metrics.WatchQueues(metrics.QueueCollectorConfig{Source: st, Now: svcCfg.Now, Logger: a.log})
	a.svc, err = service.New(a.metrics.ObserveStore(st), svcCfg)
	if err != nil {
		return nil, err
	}
	a.metrics.WatchQueueControls(a.svc.QueueControls)
	svcCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancelSvc = cancel
	a.svcDone = make(chan error, 1)
	go func() { a.svcDone <- a.svc.Run(svcCtx) }()

	a.grpc = grpc.NewServer(
		grpc.ChainUnaryInterceptor(
			a.metrics.UnaryInterceptor(),
			skipQuietCalls(a.log, logging.UnaryServerInterceptor(interceptorLogger(a.log), logging.WithLogOnEvents(logging.FinishCall), logging.WithLevels(quietCodes))),
			recovery.UnaryServerInterceptor(recovery.WithRecoveryHandler(recovered(a.log))),
		),
		grpc.ChainStreamInterceptor(
			a.metrics.StreamInterceptor(),
			logging.StreamServerInterceptor(interceptorLogger(a.log), logging.WithLogOnEvents(logging.FinishCall), logging.WithLevels(quietCodes)),
			contextErrorStatus,
			recovery.StreamServerInterceptor(recovery.WithRecoveryHandler(recovered(a.log))),
		),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// A worker whose machine vanishes without closing its connection is
		// found dead within Time+Timeout, its stream ends, and its jobs go
		// back; without this they would wait for lease expiry.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 15 * time.Second, Timeout: 5 * time.Second}),
		grpc.WaitForHandlers(true),
	)
	grpcserver.New(a.svc, a.log).Register(a.grpc)
	grpcserver.NewScheduleServer(a.svc, a.log).Register(a.grpc)
	grpcserver.NewQueueAdminServer(a.svc, a.log).Register(a.grpc)
	grpcserver.NewAdminServer(a.svc, a.log).Register(a.grpc)
	a.health = health.NewServer()
	healthpb.RegisterHealthServer(a.grpc, a.health)
	reflection.Register(a.grpc)
	a.metrics.InitializeGRPC(a.grpc)
	a.setServing(true)
	a.healthDone = make(chan struct{})
	go a.watchHealth(svcCtx)

	a.grpcLis, err = net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return nil, fmt.Errorf("listen for gRPC on %s: %w", cfg.GRPCAddr, err)
	}
	go func() { a.serveErr <- a.grpc.Serve(a.grpcLis) }()

	if cfg.HTTPAddr != "" {
		a.httpLis, err = net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return nil, fmt.Errorf("listen for HTTP on %s: %w", cfg.HTTPAddr, err)
		}
		dash, err := dashboard.Handler(dashboard.Config{Service: a.svc, Logger: a.log, Now: svcCfg.Now})
		if err != nil {
			return nil, err
		}
		a.http = &http.Server{
			Handler:           httpserver.Handler(a.Ready, httpserver.Metrics(a.metrics.Handler()), httpserver.Dashboard(dash)),
			ReadHeaderTimeout: 10 * time.Second,
		}
		go func() {
			if err := a.http.Serve(a.httpLis); !errors.Is(err, http.ErrServerClosed) {
				a.serveErr <- err
			}
		}()
	}
	a.log.Info("queued is serving", "grpc", a.GRPCAddr(), "http", a.HTTPAddr())
	return a, nil
}

// GRPCAddr is the address the gRPC server listens on.
func (a *App) GRPCAddr() string { return a.grpcLis.Addr().String() }

// HTTPAddr is the address of the HTTP server, or "" if disabled.
func (a *App) HTTPAddr() string {
	if a.httpLis == nil {
		return ""
	}
	return a.httpLis.Addr().String()
}

// Service is the running service, for tests that drive it directly.
func (a *App) Service() *service.Service { return a.svc }

// Pool is the database pool, for tests that inspect rows.
func (a *App) Pool() *pgxpool.Pool { return a.pool }

// Wait blocks until a listener fails or ctx ends.
func (a *App) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-a.serveErr:
		return err
	case err := <-a.svcDone:
		return fmt.Errorf("service stopped: %w", err)
	}
}

// Shutdown drains and stops: no new jobs are handed out, health turns
// NOT_SERVING, workers get DrainTimeout to settle what they hold (their
// streams end as soon as they hold nothing), jobs still held then are handed
// back, and the database is released last.
func (a *App) Shutdown(ctx context.Context) error {
	a.stopOnce.Do(func() {
		// Shutdown turns every status NOT_SERVING and ignores later
		// updates, so the health loop cannot flip it back.
		a.health.Shutdown()
		a.metrics.SetHealth(true, false)
		a.svc.Drain()
		done := make(chan struct{})
		go func() {
			a.grpc.GracefulStop()
			close(done)
		}()
		timer := time.NewTimer(a.cfg.DrainTimeout)
		defer timer.Stop()
		select {
		case <-done:
		case <-timer.C:
			a.log.Warn("drain timeout: closing remaining streams; their jobs go back to the queue")
			a.grpc.Stop()
			<-done
		case <-ctx.Done():
			a.grpc.Stop()
			<-done
		}
		if a.http != nil {
			_ = a.http.Shutdown(ctx)
		}
		a.cancelSvc()
		if err := <-a.svcDone; err != nil {
			a.stopErr = err
		}
		<-a.healthDone
		a.release()
	})
	return a.stopErr
}

// Kill stops the server abruptly, as a crash would look to clients: no
// drain, no hand-back. Tests use it; leases held by its workers expire.
func (a *App) Kill() {
	a.stopOnce.Do(func() {
		a.svc.Crash()
		a.grpcLis.Close()
		a.grpc.Stop()
		if a.http != nil {
			a.http.Close()
		}
		a.cancelSvc()
		<-a.svcDone
		<-a.healthDone
		a.release()
	})
}

func (a *App) release() {
	if a.pool != nil {
		a.pool.Close()
	}
	if a.pg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := a.pg.Stop(ctx); err != nil {
			a.log.Error("stop private PostgreSQL", "err", err)
		}
	}
}

func waitForDatabase(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := pool.Ping(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("database unreachable: %w", err)
		}
		log.Warn("waiting for the database", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func ensureDatabase(ctx context.Context, serverURL, name string) error {
	pool, err := pgxpool.New(ctx, serverURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("look for database %q: %w", name, err)
	}
	if !exists {
		if _, err := pool.Exec(ctx, `CREATE DATABASE `+name); err != nil {
			return fmt.Errorf("create database %q: %w", name, err)
		}
	}
	return nil
}

func interceptorLogger(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}

// quietCodes logs ordinary outcomes at debug level, so a busy server's log
// holds what an operator needs to see.
func quietCodes(c codes.Code) logging.Level {
	switch c {
	case codes.OK, codes.Canceled, codes.NotFound, codes.FailedPrecondition, codes.InvalidArgument, codes.AlreadyExists, codes.Unavailable:
		return logging.LevelDebug
	case codes.ResourceExhausted, codes.DeadlineExceeded:
		return logging.LevelInfo
	}
	return logging.LevelError
}

// contextErrorStatus turns a bare context error from a stream handler (a
// worker that hung up) into its status, so it is logged and counted as
// Canceled instead of an Unknown error.
func contextErrorStatus(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	err := handler(srv, ss)
	if _, ok := status.FromError(err); !ok && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return status.FromContextError(err).Err()
	}
	return err
}

func recovered(l *slog.Logger) recovery.RecoveryHandlerFunc {
	return func(p any) error {
		l.Error("panic in handler", "panic", p)
		return status.Error(codes.Internal, "internal error")
	}
}

// ParseCron is the service's cron parser: internal/cronspec, which wraps
// robfig/cron's parser with queued's daylight-saving rule.
func ParseCron(expr string, loc *time.Location) (service.ScheduleSpec, error) {
	spec, err := cronspec.Parse(expr, loc)
	if err != nil {
		return nil, err
	}
	return spec, nil
}

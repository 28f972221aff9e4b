// Package queuedtest starts real queued servers for tests: the same
// internal/app wiring as cmd/queued, on 127.0.0.1:0, over a fresh database
// from storetest.
package queuedtest

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/internal/app"
	"github.com/queued-dev/queued/service"
	"github.com/queued-dev/queued/store/storetest"
)

// Server is a running server and a client connected to it.
type Server struct {
	*app.App
	DatabaseURL string
	Conn        *grpc.ClientConn
	Client      queuedv1.QueueServiceClient
	Flows       queuedv1.FlowServiceClient
	Admin       queuedv1.AdminServiceClient
}

// Option adjusts the server's configuration.
type Option func(*app.Config)

// WithService changes the service configuration.
func WithService(f func(*service.Config)) Option {
	return func(c *app.Config) { f(&c.Service) }
}

// WithHTTP turns on the HTTP listener.
func WithHTTP() Option {
	return func(c *app.Config) { c.HTTPAddr = "127.0.0.1:0" }
}

// WithGRPCAddr listens on addr instead of a free port, e.g. the address of
// a server the test killed, so clients see "the same server came back".
func WithGRPCAddr(addr string) Option {
	return func(c *app.Config) { c.GRPCAddr = addr }
}

// Start runs a server on a fresh database.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	return StartOn(t, storetest.NewDatabase(t), opts...)
}

// StartOn runs a server on an existing database, e.g. a second replica.
func StartOn(t testing.TB, dbURL string, opts ...Option) *Server {
	t.Helper()
	cfg := app.Config{
		GRPCAddr:     "127.0.0.1:0",
		DatabaseURL:  dbURL,
		MaxConns:     8,
		DrainTimeout: 5 * time.Second,
		Service: service.Config{
			SweepInterval: 100 * time.Millisecond,
			PollInterval:  500 * time.Millisecond,
			PingInterval:  time.Second,
		},
	}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := app.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = a.Shutdown(ctx)
	})
	conn, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial server: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return &Server{App: a, DatabaseURL: dbURL, Conn: conn, Client: queuedv1.NewQueueServiceClient(conn), Flows: queuedv1.NewFlowServiceClient(conn), Admin: queuedv1.NewAdminServiceClient(conn)}
}

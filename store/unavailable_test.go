package store_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/queued-dev/queued/service"
	"github.com/queued-dev/queued/store"
	"github.com/queued-dev/queued/store/storetest"
)

// A database that cannot be reached is a transient condition the caller
// should retry (gRPC Unavailable), not an internal error.
func TestUnreachableDatabaseIsUnavailable(t *testing.T) {
	t.Parallel()
	// A port nothing listens on: bind one, then close it.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@"+addr+"/queued?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s := store.New(pool)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := time.Now()
	_, err = s.InsertJobs(ctx, []service.NewJob{{Queue: "q", Name: "n", State: service.StateAvailable, MaxAttempts: 1, RunAt: now, CreatedAt: now}})
	if !errors.Is(err, service.ErrUnavailable) {
		t.Fatalf("InsertJobs() on an unreachable database = %v, want ErrUnavailable", err)
	}
	if _, err := s.GetJob(ctx, 1); !errors.Is(err, service.ErrUnavailable) {
		t.Fatalf("GetJob() on an unreachable database = %v, want ErrUnavailable", err)
	}
}

// Errors of a reachable database keep their meaning.
func TestReachableDatabaseErrorsAreNotUnavailable(t *testing.T) {
	t.Parallel()
	s := store.New(storetest.NewPool(t))
	_, err := s.GetJob(context.Background(), 12345)
	if !errors.Is(err, service.ErrNotFound) || errors.Is(err, service.ErrUnavailable) {
		t.Fatalf("GetJob(missing) = %v, want ErrNotFound only", err)
	}
}

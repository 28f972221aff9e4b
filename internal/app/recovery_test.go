package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/queued-dev/queued/internal/app"
	"github.com/queued-dev/queued/internal/queuedtest"
	"github.com/queued-dev/queued/store/storetest"
)

// TestPostgresRestartUnderLoad kills PostgreSQL (immediate mode, as a crash)
// while producers enqueue and workers ack, and starts it again. queued must
// keep running, report NOT_SERVING while the database is away and SERVING
// after, and lose nothing: every job whose Enqueue returned OK ends
// completed, and no job is delivered again once its ack was confirmed.
func TestPostgresRestartUnderLoad(t *testing.T) {
	// A private cluster only this test uses: never restart a shared server.
	cluster := storetest.PrivateCluster(t, "restart")
	dbURL := storetest.NewDatabaseOn(t, cluster.URL("postgres"))
	// The test cluster runs with synchronous_commit off for speed, which
	// would let a crash lose commits PostgreSQL already confirmed. queued's
	// guarantee rests on durable commits, so turn them back on here.
	execSQL(t, dbURL, `DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET synchronous_commit = on', current_database()); END $$`)

	srv := queuedtest.StartOn(t, dbURL, queuedtest.WithHTTP(), func(c *app.Config) {
		c.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	health := watchHealth(t, srv)

	ctx, stopAll := context.WithCancel(context.Background())
	defer stopAll()
	ledger := queuedtest.NewLedger()
	var workersDone []<-chan struct{}
	for i := range 2 {
		_, done := queuedtest.RunWorker(ctx, srv.Client, queuedtest.WorkerOptions{
			Queues: []string{"restart"}, Window: 16, LeaseDuration: 3 * time.Second,
			ID: fmt.Sprintf("worker-%d", i), Ledger: ledger,
		})
		workersDone = append(workersDone, done)
	}
	prodCtx, stopProducers := context.WithCancel(ctx)
	defer stopProducers()
	var producers []*queuedtest.Producer
	var producersDone []<-chan struct{}
	for i := range 4 {
		p, done := queuedtest.RunProducer(prodCtx, srv.Client, queuedtest.ProducerOptions{
			Queue: "restart", Name: fmt.Sprintf("producer-%d", i), Pause: 2 * time.Millisecond,
		})
		producers = append(producers, p)
		producersDone = append(producersDone, done)
	}

	waitFor(t, 30*time.Second, "200 acks before the restart", func() bool { return ledger.AckedCount() >= 200 })
	killCtx, cancelKill := context.WithTimeout(context.Background(), time.Minute)
	defer cancelKill()
	if err := cluster.Kill(killCtx); err != nil {
		t.Fatalf("kill PostgreSQL: %v", err)
	}
	// The server is unhealthy but alive while the database is away.
	waitFor(t, 10*time.Second, "health NOT_SERVING", func() bool {
		return health.last() == healthpb.HealthCheckResponse_NOT_SERVING
	})
	// Stay down longer than a lease, so leases expire meanwhile and the
	// sweeper must take them back once the database returns.
	time.Sleep(4 * time.Second)
	if err := cluster.Restart(killCtx); err != nil {
		t.Fatalf("restart PostgreSQL: %v", err)
	}
	waitFor(t, 30*time.Second, "health SERVING again", func() bool {
		return health.last() == healthpb.HealthCheckResponse_SERVING
	})
	ackedAtRestart := ledger.AckedCount()
	waitFor(t, 60*time.Second, "200 more acks after the restart", func() bool { return ledger.AckedCount() >= ackedAtRestart+200 })

	stopProducers()
	for _, d := range producersDone {
		<-d
	}
	var enqueued []int64
	retries := 0
	for _, p := range producers {
		enqueued = append(enqueued, p.Enqueued()...)
		retries += p.Retries()
		// A database outage is transient: clients must be told to retry
		// (Unavailable), never that the server failed (Internal).
		for code, n := range p.Failures() {
			if code != codes.Unavailable {
				t.Errorf("%d Enqueue calls failed with %v, want only Unavailable", n, code)
			}
		}
	}
	if retries == 0 {
		t.Fatalf("no Enqueue failed while PostgreSQL was down: the restart did not hit the load")
	}

	pool := srv.Pool()
	// Every job whose Enqueue returned OK completes. So do jobs committed
	// for calls the producer gave up on when it was stopped: wait for the
	// whole table, while the workers still run.
	waitFor(t, 60*time.Second, "every job completed", func() bool {
		var done, open int
		err := pool.QueryRow(context.Background(),
			`SELECT count(*) FILTER (WHERE id = ANY(@ids) AND state = 'completed'), count(*) FILTER (WHERE state <> 'completed') FROM queued_jobs`,
			pgx.NamedArgs{"ids": enqueued}).Scan(&done, &open)
		return err == nil && done == len(enqueued) && open == 0
	})
	stopAll()
	for _, d := range workersDone {
		<-d
	}
	for code, n := range ledger.AckFailures() {
		if code != codes.Unavailable && code != codes.FailedPrecondition {
			t.Errorf("%d acks failed with %v, want only Unavailable or FailedPrecondition (lease lost)", n, code)
		}
	}
	if v := ledger.Violations(); len(v) > 0 {
		t.Fatalf("%d jobs were delivered after their ack was confirmed, e.g. %s", len(v), v[0])
	}
	seq := health.all()
	if !isNotServingThenServing(seq) {
		t.Fatalf("health statuses = %v, want SERVING, NOT_SERVING, then SERVING", seq)
	}
	t.Logf("%d jobs enqueued (%d enqueue retries), %d deliveries, %d acks confirmed, %d stream reconnects",
		len(enqueued), retries, ledger.Deliveries(), ledger.AckedCount(), ledger.Reconnects())
}

func isNotServingThenServing(seq []healthpb.HealthCheckResponse_ServingStatus) bool {
	i := slices.Index(seq, healthpb.HealthCheckResponse_NOT_SERVING)
	return i > 0 && seq[0] == healthpb.HealthCheckResponse_SERVING &&
		slices.Contains(seq[i:], healthpb.HealthCheckResponse_SERVING)
}

// healthLog records every status a gRPC health Watch stream reports.
type healthLog struct {
	mu  sync.Mutex
	seq []healthpb.HealthCheckResponse_ServingStatus
}

func (h *healthLog) last() healthpb.HealthCheckResponse_ServingStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.seq) == 0 {
		return healthpb.HealthCheckResponse_UNKNOWN
	}
	return h.seq[len(h.seq)-1]
}

func (h *healthLog) all() []healthpb.HealthCheckResponse_ServingStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.seq)
}

func watchHealth(t *testing.T, srv *queuedtest.Server) *healthLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := healthpb.NewHealthClient(srv.Conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: "queued.v1.QueueService"})
	if err != nil {
		t.Fatalf("health Watch() = %v", err)
	}
	h := &healthLog{}
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.seq = append(h.seq, resp.GetStatus())
			h.mu.Unlock()
		}
	}()
	return h
}

func execSQL(t *testing.T, dbURL, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testWriter sends the server's log to the test's log, so a failure shows
// what the server saw.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/queued-dev/queued/service"
	"github.com/queued-dev/queued/store/storetest"
)

// TestCompletePlanJoinsTheBatchToThePrimaryKey guards the ack statement's
// cached (generic) plan: it must look the batch up by primary key, not scan
// every running job through the lease-expiry index, or an ack batch costs as
// much as all leases held by all workers.
func TestCompletePlanJoinsTheBatchToThePrimaryKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, storetest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	// A table with history, and many leases out, as with a few busy workers.
	if _, err := pool.Exec(ctx, `INSERT INTO queued_jobs (queue, name, state, max_attempts, run_at, created_at, finished_at, attempt)
		SELECT 'q', 'noop', 'completed', 5, now(), now(), now(), 1 FROM generate_series(1, 50000)`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO queued_jobs (queue, name, state, max_attempts, run_at, created_at,
		lease_token, lease_expires_at, attempt)
		SELECT 'q', 'noop', 'running', 5, now(), now(), gen_random_uuid(), now() + interval '30 seconds', 1
		FROM generate_series(1, 500)`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE queued_jobs`); err != nil {
		t.Fatal(err)
	}
	sql, _, err := pgx.NamedArgs{"now": nil, "ids": nil, "tokens": nil, "results": nil}.RewriteQuery(ctx, nil, completeSQL, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, stmt := range []string{`SET plan_cache_mode = force_generic_plan`, `PREPARE complete_plan AS ` + sql} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	rows, _ := conn.Query(ctx, `EXPLAIN EXECUTE complete_plan(now(), '{1}', '{x}', '{NULL}')`, pgx.QueryExecModeSimpleProtocol)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	if !strings.Contains(plan, "queued_jobs_pkey") || strings.Contains(plan, "queued_jobs_lease_expiry") {
		t.Fatalf("generic plan of the ack does not join the batch to the primary key:\n%s", plan)
	}
}

// TestCompleteJobsMatchesOnlyTheCurrentLease checks the fencing that
// completeSQL spells without naming the state: a live lease completes, a
// wrong token and a finished job do not.
func TestCompleteJobsMatchesOnlyTheCurrentLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, storetest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := New(pool)
	now := time.Now()
	if _, err := s.InsertJobs(ctx, []service.NewJob{
		{Queue: "q", Name: "a", State: service.StateAvailable, MaxAttempts: 3, RunAt: now, CreatedAt: now},
		{Queue: "q", Name: "b", State: service.StateAvailable, MaxAttempts: 3, RunAt: now, CreatedAt: now},
	}); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.ClaimJobs(ctx, service.ClaimParams{Queues: []string{"q"}, Now: now,
		Owners: []string{"w", "w"}, ExpiresAt: []time.Time{now.Add(time.Minute), now.Add(time.Minute)}})
	if err != nil || len(claimed) != 2 {
		t.Fatalf("ClaimJobs() = %d jobs, %v; want 2", len(claimed), err)
	}
	a, b := claimed[0].Lease, claimed[1].Lease
	errs, err := s.CompleteJobs(ctx, []service.Completion{
		{LeaseRef: service.LeaseRef{JobID: a.Job.ID, Token: a.Token}},
		{LeaseRef: service.LeaseRef{JobID: b.Job.ID, Token: "not-the-token"}},
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || errs[1] == nil {
		t.Fatalf("CompleteJobs() = %v; want the live lease completed and the wrong token refused", errs)
	}
	// Acking the completed job again with its old token changes nothing.
	errs, err = s.CompleteJobs(ctx, []service.Completion{{LeaseRef: service.LeaseRef{JobID: a.Job.ID, Token: a.Token}}}, now.Add(time.Second))
	if err != nil || errs[0] == nil {
		t.Fatalf("second ack = %v, %v; want a lost lease", errs, err)
	}
	for _, want := range []struct {
		id    int64
		state service.JobState
	}{{a.Job.ID, service.StateCompleted}, {b.Job.ID, service.StateRunning}} {
		job, err := s.GetJob(ctx, want.id)
		if err != nil {
			t.Fatal(err)
		}
		if job.State != want.state || (want.state == service.StateCompleted && !job.FinishedAt.Equal(now.Truncate(time.Microsecond))) {
			t.Fatalf("job %d: state %s finished %v; want %s (finished at the first ack)", want.id, job.State, job.FinishedAt, want.state)
		}
	}
}

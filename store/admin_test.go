package store_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/queued-dev/queued/service"
	"github.com/queued-dev/queued/store"
	"github.com/queued-dev/queued/store/storetest"
)

// Finished counts stop at the cap and say so; live counts are exact.
func TestQueueOverviewsCapsFinishedCounts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, storetest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	// Rows written directly: 5 failed and 1 completed in "big", 1 failed in
	// "small", 4 available in "big".
	_, err = pool.Exec(ctx, `
INSERT INTO queued_jobs (queue, name, state, attempt, max_attempts, run_at, created_at, finished_at)
SELECT q, 'n', st, 1, 1, now(), now(), CASE WHEN st <> 'available' THEN now() END
  FROM (VALUES ('big', 'failed', 5), ('big', 'completed', 1), ('small', 'failed', 1), ('big', 'available', 4)) v(q, st, n),
       generate_series(1, v.n)`)
	if err != nil {
		t.Fatalf("insert fixtures: %v", err)
	}
	got, err := store.New(pool).QueueOverviews(ctx, 3)
	if err != nil {
		t.Fatalf("QueueOverviews() = %v", err)
	}
	if len(got) != 2 || got[0].Queue != "big" || got[1].Queue != "small" {
		t.Fatalf("QueueOverviews() = %+v, want big and small", got)
	}
	big, small := got[0], got[1]
	if big.Counts[service.StateFailed] != 3 || !big.FinishedCapped || big.Counts[service.StateCompleted] != 1 ||
		big.Counts[service.StateAvailable] != 4 || big.OldestAvailableAt.IsZero() {
		t.Errorf("big = %+v, want failed capped at 3, completed 1, available 4 with a lag", big)
	}
	if small.Counts[service.StateFailed] != 1 || small.FinishedCapped {
		t.Errorf("small = %+v, want failed 1, not capped", small)
	}
}

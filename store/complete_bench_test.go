package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/queued-dev/queued/service"
	"github.com/queued-dev/queued/store"
	"github.com/queued-dev/queued/store/storetest"
)

// BenchmarkCompleteJobs measures the coalesced ack statement (CompleteJobs)
// for plain jobs in batches of 100, over a table that also holds 100k
// finished rows. One op is one batch. Compare runs of this benchmark on two
// commits to see what a change to completeSQL costs the plain ack path.
func BenchmarkCompleteJobs(b *testing.B) {
	const batch = 100
	ctx := context.Background()
	pool := storetest.NewPool(b)
	st := store.New(pool)
	if _, err := pool.Exec(ctx, `
		INSERT INTO queued_jobs (queue, name, state, max_attempts, run_at, created_at, finished_at)
		SELECT 'old', 'x', 'completed', 1, now(), now(), now() FROM generate_series(1, 100000);
		ANALYZE queued_jobs`); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	jobs := make([]service.NewJob, batch)
	for i := range jobs {
		jobs[i] = service.NewJob{Queue: "bench", Name: "noop", State: service.StateAvailable, MaxAttempts: 1, RunAt: now, CreatedAt: now}
	}
	owners, expires := make([]string, batch), make([]time.Time, batch)
	for i := range owners {
		owners[i], expires[i] = fmt.Sprintf("w%d", i), now.Add(time.Hour)
	}
	acks := make([]service.Completion, batch)
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		if _, err := st.InsertJobs(ctx, jobs); err != nil {
			b.Fatal(err)
		}
		claimed, err := st.ClaimJobs(ctx, service.ClaimParams{Queues: []string{"bench"}, Owners: owners, ExpiresAt: expires, Now: time.Now()})
		if err != nil || len(claimed) != batch {
			b.Fatalf("claimed %d jobs: %v", len(claimed), err)
		}
		for i, c := range claimed {
			acks[i] = service.Completion{LeaseRef: service.LeaseRef{JobID: c.Lease.Job.ID, Token: c.Lease.Token}, Result: []byte("ok")}
		}
		b.StartTimer()
		errs, err := st.CompleteJobs(ctx, acks, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range errs {
			if e != nil {
				b.Fatal(e)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*batch), "µs/ack")
}

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

// BenchmarkClaim compares the plain claim (ClaimJobs, what every unlimited
// queue runs) with the rate-limited one (ClaimLimited under a limit too
// high to bind), claiming batches of 100 from a 100k backlog. One op is one
// batch. The difference is what a rate limit costs per claim statement.
func BenchmarkClaim(b *testing.B) {
	const batch = 100
	for _, limited := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "limited"}[limited]
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			pool := storetest.NewPool(b)
			st := store.New(pool)
			if _, err := pool.Exec(ctx, `
				INSERT INTO queued_jobs (queue, name, state, max_attempts, run_at, created_at)
				SELECT 'bench', 'x', 'available', 1, now(), now() FROM generate_series(1, 100000);
				ANALYZE queued_jobs`); err != nil {
				b.Fatal(err)
			}
			if limited {
				if _, err := st.SetRateLimit(ctx, "bench", service.RateLimit{Max: service.MaxRateLimit, Per: time.Millisecond}, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
			owners, expires := make([]string, batch), make([]time.Time, batch)
			for i := range owners {
				owners[i], expires[i] = fmt.Sprintf("w%d", i), time.Now().Add(time.Hour)
			}
			claim := st.ClaimJobs
			if limited {
				claim = st.ClaimLimited
			}
			for b.Loop() {
				got, err := claim(ctx, service.ClaimParams{Queues: []string{"bench"}, Owners: owners, ExpiresAt: expires, Now: time.Now()})
				if err != nil || len(got) != batch {
					b.Fatalf("claimed %d: %v", len(got), err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*batch), "µs/job")
		})
	}
}

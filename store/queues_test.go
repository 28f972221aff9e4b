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

// limitedSetup is a store holding n available jobs in queue "q".
func limitedSetup(t *testing.T, n int, t0 time.Time) (context.Context, *store.Store) {
	t.Helper()
	ctx := context.Background()
	s := store.New(storetest.NewPool(t))
	jobs := make([]service.NewJob, n)
	for i := range jobs {
		jobs[i] = service.NewJob{Queue: "q", Name: "n", State: service.StateAvailable, MaxAttempts: 1, RunAt: t0, CreatedAt: t0}
	}
	if _, err := s.InsertJobs(ctx, jobs); err != nil {
		t.Fatal(err)
	}
	return ctx, s
}

func claimLimited(t *testing.T, ctx context.Context, s *store.Store, want int, now time.Time) int {
	t.Helper()
	n, err := tryClaimLimited(ctx, s, want, now)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// tryClaimLimited claims up to want jobs from "q" and checks what it got.
func tryClaimLimited(ctx context.Context, s *store.Store, want int, now time.Time) (int, error) {
	p := service.ClaimParams{Queues: []string{"q"}, Now: now}
	for i := range want {
		p.Owners = append(p.Owners, fmt.Sprintf("w%d", i))
		p.ExpiresAt = append(p.ExpiresAt, now.Add(time.Minute))
	}
	got, err := s.ClaimLimited(ctx, p)
	if err != nil {
		return 0, fmt.Errorf("ClaimLimited() = %w", err)
	}
	for _, c := range got {
		if c.Slot < 0 || c.Slot >= want || c.Lease.Job.State != service.StateRunning || !c.Lease.Job.StartedAt.Equal(now) {
			return 0, fmt.Errorf("claimed %+v, want a running job started at %v in a slot below %d", c, now, want)
		}
	}
	return len(got), nil
}

// The bucket starts full, gives one job per token, refills at max per
// per up to max, and a replica whose clock is behind the bucket's gets
// nothing it already refilled.
func TestClaimLimitedSpendsAndRefillsTokens(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	ctx, s := limitedSetup(t, 100, t0)
	if _, err := s.SetRateLimit(ctx, "q", service.RateLimit{Max: 5, Per: time.Second}, t0); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		at         time.Duration
		want, got  int
		tokensLeft float64
	}{
		{at: 0, want: 10, got: 5, tokensLeft: 0},                        // the initial burst
		{at: 0, want: 10, got: 0, tokensLeft: 0},                        // empty
		{at: 100 * time.Millisecond, want: 10, got: 0, tokensLeft: 0.5}, // half a token
		{at: 400 * time.Millisecond, want: 10, got: 2, tokensLeft: 0},   // 2 whole tokens
		{at: 300 * time.Millisecond, want: 10, got: 0, tokensLeft: 0},   // clock behind: nothing twice
		{at: 10 * time.Second, want: 3, got: 3, tokensLeft: 2},          // capped at max, took 3 of 5
		{at: 10 * time.Second, want: 10, got: 2, tokensLeft: 0},
	}
	for i, st := range steps {
		now := t0.Add(st.at)
		if got := claimLimited(t, ctx, s, st.want, now); got != st.got {
			t.Fatalf("step %d (at +%v): claimed %d, want %d", i, st.at, got, st.got)
		}
		b, err := s.ReadBucket(ctx, "q", now)
		if err != nil {
			t.Fatal(err)
		}
		if b.Limit != (service.RateLimit{Max: 5, Per: time.Second}) || b.Tokens < st.tokensLeft-1e-9 || b.Tokens > st.tokensLeft+1e-9 {
			t.Fatalf("step %d (at +%v): bucket %+v, want %v tokens", i, st.at, b, st.tokensLeft)
		}
	}
}

// Changing a limit keeps what the bucket held (no fresh burst); clearing it
// makes ClaimLimited claim like an unlimited claim.
func TestRateLimitChangesKeepTheBucket(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	ctx, s := limitedSetup(t, 100, t0)
	if _, err := s.SetRateLimit(ctx, "q", service.RateLimit{Max: 5, Per: time.Second}, t0); err != nil {
		t.Fatal(err)
	}
	if got := claimLimited(t, ctx, s, 10, t0); got != 5 {
		t.Fatalf("first claim = %d, want 5", got)
	}
	st, err := s.SetRateLimit(ctx, "q", service.RateLimit{Max: 50, Per: time.Second}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Limit.Max != 50 || st.Limit.Per != time.Second || st.Paused {
		t.Fatalf("SetRateLimit() = %+v", st)
	}
	if got := claimLimited(t, ctx, s, 10, t0); got != 0 {
		t.Fatalf("claim right after raising the limit = %d, want 0 (no fresh burst)", got)
	}
	if got := claimLimited(t, ctx, s, 10, t0.Add(100*time.Millisecond)); got != 5 {
		t.Fatalf("claim 100ms later at 50/s = %d, want 5", got)
	}
	if _, err := s.SetRateLimit(ctx, "q", service.RateLimit{}, t0); err != nil {
		t.Fatal(err)
	}
	if got := claimLimited(t, ctx, s, 20, t0.Add(100*time.Millisecond)); got != 20 {
		t.Fatalf("claim after clearing the limit = %d, want 20", got)
	}
	if b, err := s.ReadBucket(ctx, "q", t0); err != nil || b.Limit.Limited() {
		t.Fatalf("ReadBucket() after clearing = %+v, %v; want no limit", b, err)
	}
}

// Pausing creates the queue's row; settings and counts read back.
func TestQueueSettingsAndCounts(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	ctx, s := limitedSetup(t, 3, t0)
	st, err := s.SetQueuePaused(ctx, "q", true, t0)
	if err != nil || !st.Paused || st.Queue != "q" || !st.UpdatedAt.Equal(t0) {
		t.Fatalf("SetQueuePaused() = %+v, %v", st, err)
	}
	if _, err := s.SetQueuePaused(ctx, "other", false, t0); err != nil {
		t.Fatal(err)
	}
	all, err := s.ListQueueSettings(ctx)
	if err != nil || len(all) != 2 || all[0].Queue != "other" || all[0].Paused || all[1].Queue != "q" || !all[1].Paused {
		t.Fatalf("ListQueueSettings() = %+v, %v", all, err)
	}
	if got := claimLimited(t, ctx, s, 1, t0); got != 1 { // no limit: claims
		t.Fatalf("claim from an unlimited queue = %d, want 1", got)
	}
	counts, err := s.CountLiveJobs(ctx, "q")
	if err != nil {
		t.Fatal(err)
	}
	if c := counts["q"]; len(counts) != 1 || c[service.StateAvailable] != 2 || c[service.StateRunning] != 1 {
		t.Fatalf("CountLiveJobs(q) = %v, want 2 available and 1 running", counts)
	}
	if counts, err := s.CountLiveJobs(ctx, "other"); err != nil || len(counts) != 0 {
		t.Fatalf("CountLiveJobs(other) = %v, %v; want none", counts, err)
	}
}

// Concurrent claimers (as on many replicas) share one bucket: however many
// race, no token is spent twice.
func TestConcurrentLimitedClaimsShareTheBucket(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	ctx, s := limitedSetup(t, 200, t0)
	if _, err := s.SetRateLimit(ctx, "q", service.RateLimit{Max: 7, Per: time.Hour}, t0); err != nil {
		t.Fatal(err)
	}
	const claimers = 8
	type result struct {
		n   int
		err error
	}
	got := make(chan result, claimers)
	for range claimers {
		go func() {
			n, err := tryClaimLimited(ctx, s, 5, t0.Add(time.Millisecond))
			got <- result{n, err}
		}()
	}
	total := 0
	for range claimers {
		r := <-got
		if r.err != nil {
			t.Fatal(r.err)
		}
		total += r.n
	}
	if total != 7 {
		t.Fatalf("%d concurrent claims took %d jobs in all, want 7 (the bucket)", claimers, total)
	}
}

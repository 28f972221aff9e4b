package queued_test

import (
	"context"
	"sync"
	"testing"
	"time"

	queued "github.com/queued-dev/queued/clients/go"
	"github.com/queued-dev/queued/internal/queuedtest"
	"github.com/queued-dev/queued/store/storetest"
)

func dial(t testing.TB, addr string) *queued.Client {
	t.Helper()
	c, err := queued.Dial(context.Background(), addr)
	if err != nil {
		t.Fatalf("Dial(%q) = %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// running is a worker whose Run goroutine a test can stop and wait for.
type running struct {
	t       testing.TB
	cancel  context.CancelFunc
	done    chan error
	stopped sync.Once
}

func run(t testing.TB, w *queued.Worker) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: t, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx) }()
	t.Cleanup(func() { r.stop(60 * time.Second) })
	return r
}

// stop cancels Run and waits for it to return.
func (r *running) stop(timeout time.Duration) {
	r.t.Helper()
	r.stopped.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				r.t.Errorf("Run() = %v", err)
			}
		case <-time.After(timeout):
			r.t.Errorf("Run did not return within %v of its context ending", timeout)
		}
	})
}

func waitState(t testing.TB, c *queued.Client, id int64, want queued.State, timeout time.Duration) *queued.Job {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j, err := c.GetJob(context.Background(), id)
		if err != nil {
			t.Fatalf("GetJob(%d) = %v", id, err)
		}
		if j.State == want {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d is %s after %v, want %s (errors %v)", id, j.State, timeout, want, j.Errors)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func countJobs(t testing.TB, s *queuedtest.Server, where string) int {
	t.Helper()
	var n int
	if err := s.Pool().QueryRow(context.Background(), `SELECT count(*) FROM queued_jobs WHERE `+where).Scan(&n); err != nil {
		t.Fatalf("count jobs: %v", err)
	}
	return n
}

// counter counts handler runs per job id.
type counter struct {
	mu   sync.Mutex
	runs map[int64]int
}

func newCounter() *counter { return &counter{runs: map[int64]int{}} }

func (c *counter) add(id int64) {
	c.mu.Lock()
	c.runs[id]++
	c.mu.Unlock()
}

func (c *counter) get(id int64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runs[id]
}

func (c *counter) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.runs)
}

func storetestDatabase(t testing.TB) string { return storetest.NewDatabase(t) }

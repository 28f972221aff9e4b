package queued

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/queued-dev/queued/internal/queuedtest"
)

// recountOrphansLocked counts orphaned jobs the slow way, as windowLocked
// once did, to check the kept count.
func (w *Worker) recountOrphansLocked() int {
	n := 0
	for _, aj := range w.jobs {
		if aj.started && (!aj.owned || aj.conn != w.conn) {
			n++
		}
	}
	return n
}

// TestWindowCountsCancelledRunningJobAsOrphan: a cancelled job whose
// handler has not returned takes a slot the server no longer counts, so
// the window shrinks by one until the handler returns; the kept count of
// orphans matches a recount all along.
func TestWindowCountsCancelledRunningJobAsOrphan(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	ctx := context.Background()
	c, err := Dial(ctx, s.GRPCAddr())
	if err != nil {
		t.Fatalf("Dial() = %v", err)
	}
	defer c.Close()
	started := make(chan struct{}, 1)
	unblock := make(chan struct{})
	var unblockOnce sync.Once
	release := func() { unblockOnce.Do(func() { close(unblock) }) }
	w := NewWorker(c, WorkerConfig{Queues: []string{"q"}, Concurrency: 3})
	w.Handle("stubborn", func(ctx context.Context, job *Job) ([]byte, error) {
		started <- struct{}{}
		<-ctx.Done()
		<-unblock // ignores the cancellation until the test lets it go
		return nil, ctx.Err()
	})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	defer func() {
		stop()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Error("Run did not return")
		}
	}()
	defer release() // before Run is stopped, also when the test fails early
	window := func() (kept, recount, win int) {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.orphans, w.recountOrphansLocked(), w.windowLocked()
	}
	waitWindow := func(what string, wantOrphans int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			kept, recount, win := window()
			if kept != recount {
				t.Fatalf("%s: kept orphan count %d, recount %d", what, kept, recount)
			}
			if kept == wantOrphans && win == 3-wantOrphans {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: orphans %d window %d, want %d and %d", what, kept, win, wantOrphans, 3-wantOrphans)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	e, err := c.Enqueue(ctx, "q", "stubborn", nil)
	if err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not start")
	}
	waitWindow("running", 0)
	if _, err := c.CancelJob(ctx, e.ID, "test"); err != nil {
		t.Fatalf("CancelJob() = %v", err)
	}
	waitWindow("cancelled, handler still running", 1)
	release()
	waitWindow("handler returned", 0)
}

package queued

import "context"

// runner is a long-lived goroutine that runs handlers, one job at a time.
// Reusing goroutines keeps their grown stacks: with a fresh goroutine per
// job, every job grew a new stack while its ack was marshalled, which was
// the largest part of the worker's CPU when draining a backlog.
type runner struct {
	next chan runTask // buffered 1; sent to only while the runner is idle
}

// runTask is one job for a runner: its handler and handler context.
type runTask struct {
	ctx context.Context
	aj  *activeJob
	h   HandlerFunc
}

// dispatchLocked runs t on an idle runner, or on a new one if none is idle.
// It never blocks, so it may be called with w.mu held.
func (w *Worker) dispatchLocked(t runTask) {
	if n := len(w.idle); n > 0 {
		r := w.idle[n-1]
		w.idle[n-1] = nil
		w.idle = w.idle[:n-1]
		r.next <- t
		return
	}
	go w.runLoop(&runner{next: make(chan runTask, 1)}, t)
}

// runLoop works t, then waits idle for the next task. It ends when Run
// has ended or when as many runners as handler slots are already idle
// (more are never needed at once).
func (w *Worker) runLoop(r *runner, t runTask) {
	for {
		w.work(t.ctx, t.aj, t.h)
		w.mu.Lock()
		if w.runnersDone || len(w.idle) >= w.cfg.Concurrency {
			w.mu.Unlock()
			return
		}
		w.idle = append(w.idle, r)
		w.mu.Unlock()
		var ok bool
		if t, ok = <-r.next; !ok {
			return
		}
	}
}

// stopRunners ends the idle runners; runners still working end when their
// job is done.
func (w *Worker) stopRunners() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.runnersDone = true
	for _, r := range w.idle {
		close(r.next)
	}
	w.idle = nil
}

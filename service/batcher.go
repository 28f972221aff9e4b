package service

import (
	"context"
	"sync"
)

// batcher coalesces concurrent calls into one flush. A call waits while a
// flush runs; the next flush takes everything that arrived meanwhile. An idle
// batcher flushes a lone call at once, so coalescing never adds a timer's
// delay. A call returns only after the flush that carried it returned.
type batcher[Req, Res any] struct {
	calls   chan *batchCall[Req, Res]
	flush   func(ctx context.Context, reqs []Req) []batchResult[Res]
	weight  func(Req) int // rows a request adds to a flush
	maxRows int
	workers int

	mu      sync.RWMutex
	stopped bool
}

type batchCall[Req, Res any] struct {
	req  Req
	done chan batchResult[Res]
}

type batchResult[Res any] struct {
	res Res
	err error
}

func newBatcher[Req, Res any](workers, maxRows int, weight func(Req) int, flush func(context.Context, []Req) []batchResult[Res]) *batcher[Req, Res] {
	return &batcher[Req, Res]{
		calls:   make(chan *batchCall[Req, Res], maxRows),
		flush:   flush,
		weight:  weight,
		maxRows: maxRows,
		workers: workers,
	}
}

// do submits req and waits for its flush. If ctx ends first the call may
// still be flushed; the caller just stops waiting.
func (b *batcher[Req, Res]) do(ctx context.Context, req Req) (Res, error) {
	c := &batchCall[Req, Res]{req: req, done: make(chan batchResult[Res], 1)}
	var zero Res
	b.mu.RLock()
	if b.stopped {
		b.mu.RUnlock()
		return zero, ErrClosed
	}
	select {
	case b.calls <- c:
		b.mu.RUnlock()
	case <-ctx.Done():
		b.mu.RUnlock()
		return zero, ctx.Err()
	}
	select {
	case r := <-c.done:
		return r.res, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// run flushes until ctx ends, then refuses new calls and flushes what was
// already submitted, so no accepted call is left unanswered.
func (b *batcher[Req, Res]) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range b.workers {
		wg.Go(func() { b.work(ctx) })
	}
	<-ctx.Done()
	b.mu.Lock()
	b.stopped = true
	b.mu.Unlock()
	wg.Wait()
	// Workers are gone; flush the remainder with a context that still
	// allows the database calls to finish.
	for {
		select {
		case c := <-b.calls:
			b.flushBatch(context.WithoutCancel(ctx), b.collect(c))
		default:
			return
		}
	}
}

func (b *batcher[Req, Res]) work(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-b.calls:
			// A flush already under way runs to completion even while
			// shutting down: its callers are waiting for the answer.
			b.flushBatch(context.WithoutCancel(ctx), b.collect(c))
		}
	}
}

// collect takes first plus whatever else is queued, up to maxRows rows.
func (b *batcher[Req, Res]) collect(first *batchCall[Req, Res]) []*batchCall[Req, Res] {
	batch := []*batchCall[Req, Res]{first}
	rows := b.weight(first.req)
	for rows < b.maxRows {
		select {
		case c := <-b.calls:
			batch = append(batch, c)
			rows += b.weight(c.req)
		default:
			return batch
		}
	}
	return batch
}

func (b *batcher[Req, Res]) flushBatch(ctx context.Context, batch []*batchCall[Req, Res]) {
	reqs := make([]Req, len(batch))
	for i, c := range batch {
		reqs[i] = c.req
	}
	results := b.flush(ctx, reqs)
	for i, c := range batch {
		c.done <- results[i]
	}
}

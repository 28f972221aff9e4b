package grpcserver_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/internal/queuedtest"
)

// watchStream is a raw Watch stream, read by a goroutine into a channel.
type watchStream struct {
	t      testing.TB
	cancel context.CancelFunc
	events chan *queuedv1.WatchEvent
	done   chan error // the stream's final error; closed events first
}

func openWatch(t testing.TB, conn grpc.ClientConnInterface, req *queuedv1.WatchRequest) *watchStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := queuedv1.NewWatchServiceClient(conn).Watch(ctx, req)
	if err != nil {
		cancel()
		t.Fatalf("Watch() = %v", err)
	}
	w := &watchStream{t: t, cancel: cancel, events: make(chan *queuedv1.WatchEvent, 100000), done: make(chan error, 1)}
	go func() {
		for {
			e, err := stream.Recv()
			if err != nil {
				close(w.events)
				w.done <- err
				return
			}
			w.events <- e
		}
	}()
	t.Cleanup(cancel)
	return w
}

// next returns the next event, checkpoints included.
func (w *watchStream) next(timeout time.Duration) *queuedv1.WatchEvent {
	w.t.Helper()
	select {
	case e, ok := <-w.events:
		if !ok {
			w.t.Fatalf("watch ended while waiting for an event: %v", <-w.done)
		}
		return e
	case <-time.After(timeout):
		w.t.Fatalf("no watch event within %v", timeout)
		return nil
	}
}

// nextJob returns the next event about a job, skipping checkpoints.
func (w *watchStream) nextJob(timeout time.Duration) *queuedv1.WatchEvent {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		e := w.next(time.Until(deadline))
		if e.GetKind() != queuedv1.WatchEventKind_WATCH_EVENT_KIND_CHECKPOINT {
			return e
		}
	}
}

// live waits for the first checkpoint: from then on every change is sent.
func (w *watchStream) live() {
	w.t.Helper()
	for {
		if e := w.next(10 * time.Second); e.GetKind() == queuedv1.WatchEventKind_WATCH_EVENT_KIND_CHECKPOINT {
			return
		}
	}
}

// wantJobEvent asserts the next job event's kind and job id.
func (w *watchStream) wantJobEvent(kind queuedv1.WatchEventKind, id int64) *queuedv1.WatchEvent {
	w.t.Helper()
	e := w.nextJob(10 * time.Second)
	if e.GetKind() != kind || e.GetJob().GetId() != id {
		w.t.Fatalf("watch event = %v job %d (state %v), want %v job %d", e.GetKind(), e.GetJob().GetId(), e.GetJob().GetState(), kind, id)
	}
	if e.GetCursor() == "" {
		w.t.Fatalf("watch event %v has no cursor", e.GetKind())
	}
	return e
}

// end waits for the stream to end and returns its error.
func (w *watchStream) end(timeout time.Duration) error {
	w.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case _, ok := <-w.events:
			if !ok {
				return <-w.done
			}
		case <-deadline:
			w.t.Fatalf("watch did not end within %v", timeout)
			return nil
		}
	}
}

// workAll leases and acks every job of queue through s until stop is closed.
func workAll(t testing.TB, s *queuedtest.Server, queue string, stop <-chan struct{}) {
	t.Helper()
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{queue}, Window: 64})
	go func() {
		for {
			select {
			case <-stop:
				return
			case j, ok := <-w.jobs:
				if !ok {
					return
				}
				_ = w.stream.Send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Ack{Ack: &queuedv1.AckRequest{
					JobId: j.GetJob().GetId(), LeaseToken: j.GetLeaseToken(), Result: []byte("r")}}})
			}
		}
	}()
}

const (
	kindCurrent    = queuedv1.WatchEventKind_WATCH_EVENT_KIND_CURRENT
	kindEnqueued   = queuedv1.WatchEventKind_WATCH_EVENT_KIND_ENQUEUED
	kindLeased     = queuedv1.WatchEventKind_WATCH_EVENT_KIND_LEASED
	kindProgress   = queuedv1.WatchEventKind_WATCH_EVENT_KIND_PROGRESS
	kindRetry      = queuedv1.WatchEventKind_WATCH_EVENT_KIND_RETRY_SCHEDULED
	kindCompleted  = queuedv1.WatchEventKind_WATCH_EVENT_KIND_COMPLETED
	kindFailed     = queuedv1.WatchEventKind_WATCH_EVENT_KIND_FAILED
	kindCancelled  = queuedv1.WatchEventKind_WATCH_EVENT_KIND_CANCELLED
	kindCheckpoint = queuedv1.WatchEventKind_WATCH_EVENT_KIND_CHECKPOINT
)

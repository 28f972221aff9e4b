package grpcserver_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/internal/queuedtest"
	"github.com/queued-dev/queued/service"
)

// Two transactions change jobs; the one that took the lower transaction id
// commits last. A watcher that saw the later one, and a watcher resuming
// from the cursor of that event, must both still get the earlier one.
func TestWatchSeesATransactionThatCommitsAfterALaterOne(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	ids := enqueue(t, s, spec("r"), spec("r"))
	first, second := ids[0].GetId(), ids[1].GetId()
	req := &queuedv1.WatchRequest{Queue: "r", Kinds: []queuedv1.WatchEventKind{kindCancelled}}
	wa := openWatch(t, s.Conn, req)
	wa.live()

	ctx := context.Background()
	cancelIn := func(id int64) (pgxTx interface {
		Commit(context.Context) error
		Rollback(context.Context) error
	}, xid int64) {
		tx, err := s.Pool().Begin(ctx)
		if err != nil {
			t.Fatalf("begin: %v", err)
		}
		t.Cleanup(func() { _ = tx.Rollback(ctx) })
		err = tx.QueryRow(ctx, `UPDATE queued_jobs SET state = 'cancelled', finished_at = now()
			WHERE id = $1 RETURNING change_xid::text::bigint`, id).Scan(&xid)
		if err != nil {
			t.Fatalf("cancel job %d in a transaction: %v", id, err)
		}
		return tx, xid
	}
	txEarly, xidEarly := cancelIn(first)
	txLate, xidLate := cancelIn(second)
	if xidEarly >= xidLate {
		t.Fatalf("transaction ids %d, %d: want the first lower", xidEarly, xidLate)
	}
	if err := txLate.Commit(ctx); err != nil {
		t.Fatalf("commit the later transaction: %v", err)
	}
	cursor := wa.wantJobEvent(kindCancelled, second).GetCursor()

	if err := txEarly.Commit(ctx); err != nil {
		t.Fatalf("commit the earlier transaction: %v", err)
	}
	wa.wantJobEvent(kindCancelled, first)

	req.Cursor = cursor
	resumed := openWatch(t, s.Conn, req)
	resumed.wantJobEvent(kindCancelled, first)
	resumed.live()
	select {
	case e := <-resumed.events:
		if e.GetKind() != kindCheckpoint {
			t.Fatalf("resumed watch sent %v for job %d after the missed change; want nothing more", e.GetKind(), e.GetJob().GetId())
		}
	case <-time.After(300 * time.Millisecond):
	}
}

func TestWatchSeesChangesMadeThroughAnotherReplica(t *testing.T) {
	t.Parallel()
	// A's safety poll is slower than the test's patience, so only the
	// notification can bring B's change to A's watcher in time.
	a := queuedtest.Start(t, queuedtest.WithService(func(c *service.Config) { c.PollInterval = time.Minute }))
	b := queuedtest.StartOn(t, a.DatabaseURL)
	byQueue := openWatch(t, a.Conn, &queuedv1.WatchRequest{Queue: "x", Kinds: []queuedv1.WatchEventKind{kindCompleted}})
	byQueue.live()

	id := enqueue(t, b, spec("x"))[0].GetId()
	byID := openWatch(t, a.Conn, &queuedv1.WatchRequest{JobIds: []int64{id}})
	byID.wantJobEvent(kindCurrent, id)
	byID.live()
	w := openWorker(t, b.Client, &queuedv1.LeaseOpen{Queues: []string{"x"}, Window: 1})
	w.ack(w.next(5*time.Second), []byte("via b"))

	if e := byQueue.wantJobEvent(kindCompleted, id); string(e.GetJob().GetResult()) != "via b" {
		t.Fatalf("result = %q, want via b", e.GetJob().GetResult())
	}
	// The lease may coalesce with the completion; the completion may not.
	if e := byID.untilKind(kindCompleted); e.GetJob().GetId() != id {
		t.Fatalf("completed job %d, want %d", e.GetJob().GetId(), id)
	}
}

// Hundreds of jobs complete while a watcher keeps disconnecting at random
// and resuming from its last cursor: it sees every completion exactly once.
func TestWatchResumingFromCursorsMissesNoCompletion(t *testing.T) {
	t.Parallel()
	a := queuedtest.Start(t)
	b := queuedtest.StartOn(t, a.DatabaseURL)
	const total = 400
	req := &queuedv1.WatchRequest{Queue: "load", Kinds: []queuedv1.WatchEventKind{kindCompleted}}
	first := openWatch(t, a.Conn, req)
	first.live()
	first.cancel()

	stop := make(chan struct{})
	defer close(stop)
	workAll(t, a, "load", stop)
	workAll(t, b, "load", stop)
	go func() {
		for i := 0; i < total/20; i++ {
			srv := a
			if i%2 == 1 {
				srv = b
			}
			specs := make([]*queuedv1.JobSpec, 20)
			for k := range specs {
				specs[k] = spec("load")
			}
			if _, err := srv.Client.Enqueue(context.Background(), &queuedv1.EnqueueRequest{Jobs: specs}); err != nil {
				t.Errorf("Enqueue() = %v", err)
				return
			}
			time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
		}
	}()

	seen := make(map[int64]int)
	cursor := ""
	reconnects := 0
	deadline := time.Now().Add(60 * time.Second)
	for len(seen) < total {
		if time.Now().After(deadline) {
			t.Fatalf("saw %d of %d completions after %d reconnects", len(seen), total, reconnects)
		}
		srv := []*queuedtest.Server{a, b}[reconnects%2]
		req.Cursor = cursor
		w := openWatch(t, srv.Conn, req)
		budget := 1 + rand.IntN(40)
		for budget > 0 && len(seen) < total {
			var e *queuedv1.WatchEvent
			select {
			case e = <-w.events:
			case <-time.After(10 * time.Second):
				t.Fatalf("no event for 10s with %d of %d seen", len(seen), total)
			}
			if e == nil {
				t.Fatalf("watch ended: %v", <-w.done)
			}
			cursor = e.GetCursor()
			if e.GetKind() == kindCompleted {
				seen[e.GetJob().GetId()]++
				budget--
			}
		}
		w.cancel()
		reconnects++
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("job %d: completion seen %d times, want once", id, n)
		}
	}
	if reconnects < 5 {
		t.Fatalf("only %d reconnects; the test did not exercise resuming", reconnects)
	}
}

func TestWatchRefusesACursorPastRetention(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64
	s := queuedtest.Start(t, queuedtest.WithService(func(c *service.Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	}))
	id := enqueue(t, s, spec("q"))[0].GetId()
	cursor := openWatch(t, s.Conn, &queuedv1.WatchRequest{JobIds: []int64{id}}).wantJobEvent(kindCurrent, id).GetCursor()

	// Within retention the cursor works.
	ok := openWatch(t, s.Conn, &queuedv1.WatchRequest{JobIds: []int64{id}, Cursor: cursor})
	ok.live()
	ok.cancel()

	offset.Store(int64(service.WatchRetentionDefault + time.Minute))
	err := openWatch(t, s.Conn, &queuedv1.WatchRequest{JobIds: []int64{id}, Cursor: cursor}).end(10 * time.Second)
	wantCode(t, err, codes.OutOfRange)
	if !strings.Contains(status.Convert(err).Message(), cursor) {
		t.Fatalf("error %v does not name the cursor %s", err, cursor)
	}
}

// A watcher that does not read is disconnected once its buffer fills; the
// queue and a watcher that keeps up carry on unharmed.
func TestSlowWatcherIsDisconnectedWithoutSlowingOthers(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t, queuedtest.WithService(func(c *service.Config) { c.WatchBuffer = 1000 }))
	// A small, fixed flow-control window, so the unread stream backs up
	// into the server soon.
	slowConn, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { slowConn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	slow, err := queuedv1.NewWatchServiceClient(slowConn).Watch(ctx, &queuedv1.WatchRequest{Queue: "busy"})
	if err != nil {
		t.Fatalf("Watch() = %v", err)
	}
	if e, err := slow.Recv(); err != nil || e.GetKind() != kindCheckpoint {
		t.Fatalf("first event = %v, %v; want the checkpoint", e, err)
	}
	fast := openWatch(t, s.Conn, &queuedv1.WatchRequest{Queue: "busy", Kinds: []queuedv1.WatchEventKind{kindCompleted}})
	fast.live()

	const total = 3000
	stop := make(chan struct{})
	defer close(stop)
	workAll(t, s, "busy", stop)
	var wg sync.WaitGroup
	for i := 0; i < total/500; i++ {
		wg.Go(func() {
			specs := make([]*queuedv1.JobSpec, 500)
			for k := range specs {
				specs[k] = &queuedv1.JobSpec{Queue: "busy", Name: "n", Metadata: map[string]string{"pad": strings.Repeat("m", 512)}}
			}
			if _, err := s.Client.Enqueue(context.Background(), &queuedv1.EnqueueRequest{Jobs: specs}); err != nil {
				t.Errorf("Enqueue() = %v", err)
			}
		})
	}
	wg.Wait()
	completed := make(map[int64]bool)
	for len(completed) < total {
		completed[fast.wantJobEventKind(kindCompleted).GetJob().GetId()] = true
	}
	if n := countRows(t, s, `state = 'completed'`); n != total {
		t.Fatalf("completed jobs = %d, want %d", n, total)
	}
	// The slow watcher reads what got through, then learns why it ended.
	for {
		_, err := slow.Recv()
		if err != nil {
			wantCode(t, err, codes.ResourceExhausted)
			break
		}
	}
}

func (w *watchStream) wantJobEventKind(kind queuedv1.WatchEventKind) *queuedv1.WatchEvent {
	w.t.Helper()
	e := w.nextJob(10 * time.Second)
	if e.GetKind() != kind {
		w.t.Fatalf("watch event = %v, want %v", e.GetKind(), kind)
	}
	return e
}

// untilKind skips events until one of kind arrives.
func (w *watchStream) untilKind(kind queuedv1.WatchEventKind) *queuedv1.WatchEvent {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if e := w.next(time.Until(deadline)); e.GetKind() == kind {
			return e
		}
	}
}

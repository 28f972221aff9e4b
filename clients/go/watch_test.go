package queued_test

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	queued "github.com/queued-dev/queued/clients/go"
	"github.com/queued-dev/queued/internal/queuedtest"
)

func TestEnqueueAndWaitReturnsTheResult(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	c := dial(t, s.GRPCAddr())
	w := queued.NewWorker(c, queued.WorkerConfig{Queues: []string{"cpu"}})
	w.Handle("square", func(ctx context.Context, j *queued.Job) ([]byte, error) {
		return []byte("49"), nil
	})
	run(t, w)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	j, err := c.EnqueueAndWait(ctx, "cpu", "square", []byte("7"))
	if err != nil {
		t.Fatalf("EnqueueAndWait() = %v", err)
	}
	if j.State != queued.StateCompleted || string(j.Result) != "49" {
		t.Fatalf("job = %s with result %q, want completed with 49", j.State, j.Result)
	}
}

func TestWaitReportsFailureCancellationAndAnEarlyFinish(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	c := dial(t, s.GRPCAddr())
	w := queued.NewWorker(c, queued.WorkerConfig{Queues: []string{"work"}})
	w.Handle("bad", func(ctx context.Context, j *queued.Job) ([]byte, error) {
		return nil, queued.Permanent(errors.New("no such user"))
	})
	w.Handle("good", func(ctx context.Context, j *queued.Job) ([]byte, error) { return []byte("ok"), nil })
	run(t, w)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	_, err := c.EnqueueAndWait(ctx, "work", "bad", nil)
	var failed *queued.JobFailedError
	if !errors.As(err, &failed) || failed.Job.Errors[len(failed.Job.Errors)-1].Message != "no such user" {
		t.Fatalf("EnqueueAndWait(bad) = %v, want a JobFailedError with the handler's error", err)
	}

	idle, err := c.Enqueue(ctx, "nobody-works-here", "x", nil)
	if err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	waited := make(chan error, 1)
	go func() {
		_, err := c.Wait(ctx, idle.ID)
		waited <- err
	}()
	time.Sleep(100 * time.Millisecond) // let Wait start; it works either way
	if _, err := c.CancelJob(ctx, idle.ID, "not needed"); err != nil {
		t.Fatalf("CancelJob() = %v", err)
	}
	if err := <-waited; !errors.Is(err, queued.ErrJobCancelled) {
		t.Fatalf("Wait(cancelled job) = %v, want ErrJobCancelled", err)
	}

	early, err := c.Enqueue(ctx, "work", "good", nil)
	if err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	waitState(t, c, early.ID, queued.StateCompleted, 10*time.Second)
	j, err := c.Wait(ctx, early.ID)
	if err != nil || string(j.Result) != "ok" {
		t.Fatalf("Wait(finished job) = %v, %v; want its result", j, err)
	}

	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	other, _ := c.Enqueue(ctx, "nobody-works-here", "x", nil)
	if _, err := c.Wait(short, other.ID); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait past its deadline = %v, want DeadlineExceeded", err)
	}
	if _, err := c.Wait(ctx, 1<<40); !queued.IsNotFound(err) {
		t.Fatalf("Wait(unknown job) = %v, want NOT_FOUND", err)
	}
}

// The watcher's replica shuts down mid-watch; the SDK reconnects (here to
// the other replica) and resumes from its cursor without missing a
// completion made meanwhile.
func TestWatchResumesOnAnotherReplicaWithoutMissingCompletions(t *testing.T) {
	t.Parallel()
	a := queuedtest.Start(t)
	b := queuedtest.StartOn(t, a.DatabaseURL)
	var target atomic.Value
	target.Store(a.GRPCAddr())
	cc, err := grpc.NewClient("passthrough:///queued", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", target.Load().(string))
		}))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { cc.Close() })
	watcher := queued.NewClient(cc)
	producer := dial(t, b.GRPCAddr())

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	events := make(chan queued.WatchEvent, 1000)
	go func() {
		for ev, err := range watcher.Watch(ctx, queued.WatchFilter{Queue: "q", Kinds: []queued.EventKind{queued.EventCompleted}}) {
			if err != nil {
				t.Errorf("Watch() = %v", err)
				return
			}
			events <- ev
		}
	}()
	if ev := <-events; ev.Kind != queued.EventCheckpoint {
		t.Fatalf("first event = %v, want the checkpoint", ev.Kind)
	}
	w := queued.NewWorker(producer, queued.WorkerConfig{Queues: []string{"q"}})
	w.Handle("x", func(ctx context.Context, j *queued.Job) ([]byte, error) { return nil, nil })
	run(t, w)

	complete := func(n int) map[int64]bool {
		ids := map[int64]bool{}
		for range n {
			e, err := producer.Enqueue(ctx, "q", "x", nil)
			if err != nil {
				t.Fatalf("Enqueue() = %v", err)
			}
			ids[e.ID] = true
		}
		return ids
	}
	want := complete(5)
	got := map[int64]bool{}
	for len(got) < 5 {
		if ev := <-events; ev.Job != nil {
			got[ev.Job.ID] = true
		}
	}

	// Stop A (the watch ends with UNAVAILABLE), complete more jobs while
	// the watcher is away, then let it reconnect to B.
	target.Store(b.GRPCAddr())
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelShutdown()
	if err := a.Shutdown(shutdownCtx); err != nil {
		t.Fatalf("Shutdown(A) = %v", err)
	}
	for id := range complete(5) {
		want[id] = true
	}
	for len(got) < len(want) {
		select {
		case ev := <-events:
			if ev.Job != nil {
				got[ev.Job.ID] = true
			}
		case <-ctx.Done():
			t.Fatalf("saw %d of %d completions", len(got), len(want))
		}
	}
	for id := range want {
		if !got[id] {
			t.Errorf("completion of job %d not seen", id)
		}
	}
}

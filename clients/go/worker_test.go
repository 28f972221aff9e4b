package queued_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	queued "github.com/queued-dev/queued/clients/go"
	"github.com/queued-dev/queued/internal/queuedtest"
)

func TestWorkerRunsHandlersStoresResultsAndProgress(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	c := dial(t, s.GRPCAddr())
	ctx := context.Background()

	type greet struct{ Name string }
	var ids []int64
	for i := range 10 {
		e, err := c.EnqueueJSON(ctx, "greetings", "greet", greet{Name: fmt.Sprint("user", i)})
		if err != nil {
			t.Fatalf("EnqueueJSON() = %v", err)
		}
		ids = append(ids, e.ID)
	}
	w := queued.NewWorker(c, queued.WorkerConfig{Queues: []string{"greetings"}, Concurrency: 4})
	w.Handle("greet", func(ctx context.Context, job *queued.Job) ([]byte, error) {
		var g greet
		if err := job.DecodeJSON(&g); err != nil {
			return nil, err
		}
		if err := job.Progress(ctx, []byte(`{"step":"half"}`)); err != nil {
			return nil, err
		}
		return []byte("hello " + g.Name), nil
	})
	run(t, w)
	for i, id := range ids {
		j := waitState(t, c, id, queued.StateCompleted, 10*time.Second)
		if want := fmt.Sprint("hello user", i); string(j.Result) != want {
			t.Errorf("job %d result = %q, want %q", id, j.Result, want)
		}
		if string(j.LastProgress) != `{"step":"half"}` {
			t.Errorf("job %d progress = %q, want the reported one", id, j.LastProgress)
		}
		if j.Attempt != 1 || len(j.Errors) != 0 {
			t.Errorf("job %d attempt %d errors %v, want one clean attempt", id, j.Attempt, j.Errors)
		}
	}
}

func TestWorkerFailsUnknownJobNamesAtOnce(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	c := dial(t, s.GRPCAddr())
	e, err := c.Enqueue(context.Background(), "q", "nobody_handles_this", nil, queued.MaxAttempts(5))
	if err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	w := queued.NewWorker(c, queued.WorkerConfig{Queues: []string{"q"}})
	w.Handle("known", func(context.Context, *queued.Job) ([]byte, error) { return nil, nil })
	run(t, w)
	j := waitState(t, c, e.ID, queued.StateFailed, 10*time.Second)
	if j.Attempt != 1 || len(j.Errors) != 1 || !strings.Contains(j.Errors[0].Message, `no handler for job name "nobody_handles_this"`) {
		t.Fatalf("job = attempt %d errors %v, want one attempt naming the missing handler", j.Attempt, j.Errors)
	}
}

func TestWorkerRetriesPanicsAndErrorsWithBackoff(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	c := dial(t, s.GRPCAddr())
	const backoff = 300 * time.Millisecond
	e, err := c.Enqueue(context.Background(), "q", "flaky", []byte("x"), queued.MaxAttempts(5), queued.Backoff(queued.FixedBackoff(backoff)))
	if err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	w := queued.NewWorker(c, queued.WorkerConfig{Queues: []string{"q"}})
	w.Handle("flaky", func(ctx context.Context, job *queued.Job) ([]byte, error) {
		switch job.Attempt {
		case 1:
			panic("boom")
		case 2:
			return nil, errors.New("smtp: try again later")
		}
		return []byte("ok"), nil
	})
	run(t, w)
	j := waitState(t, c, e.ID, queued.StateCompleted, 15*time.Second)
	if j.Attempt != 3 || len(j.Errors) != 2 {
		t.Fatalf("job = attempt %d errors %v, want completed on attempt 3 after 2 errors", j.Attempt, j.Errors)
	}
	if msg := j.Errors[0].Message; !strings.HasPrefix(msg, "panic: boom") || !strings.Contains(msg, "worker_test.go") {
		t.Errorf("first error = %q, want the panic text with its stack", msg)
	}
	if msg := j.Errors[1].Message; msg != "smtp: try again later" {
		t.Errorf("second error = %q, want the handler's error", msg)
	}
	// Attempt 2 started no earlier than the backoff after attempt 1 failed,
	// so its error came later still.
	if gap := j.Errors[1].At.Sub(j.Errors[0].At); gap < backoff {
		t.Errorf("errors %v apart, want at least the %v backoff", gap, backoff)
	}
}

func TestWorkerPermanentErrorFailsAtOnce(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	c := dial(t, s.GRPCAddr())
	e, err := c.Enqueue(context.Background(), "q", "bad", []byte("x"), queued.MaxAttempts(5))
	if err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	errBadAddress := errors.New("mailbox does not exist")
	w := queued.NewWorker(c, queued.WorkerConfig{Queues: []string{"q"}})
	w.Handle("bad", func(context.Context, *queued.Job) ([]byte, error) {
		err := queued.Permanent(fmt.Errorf("send: %w", errBadAddress))
		if !errors.Is(err, errBadAddress) || !queued.IsPermanent(err) {
			t.Errorf("Permanent(err) hides err or its mark")
		}
		return nil, err
	})
	run(t, w)
	j := waitState(t, c, e.ID, queued.StateFailed, 10*time.Second)
	if j.Attempt != 1 || len(j.Errors) != 1 || j.Errors[0].Message != "send: mailbox does not exist" {
		t.Fatalf("job = attempt %d errors %v, want failed after one attempt", j.Attempt, j.Errors)
	}
}

// TestWorkerConcurrencyNeverExceeded also cancels jobs whose handlers ignore
// the cancellation: the server frees their slots at once and sends more
// jobs, which the worker must hold until a handler actually returns.
func TestWorkerConcurrencyNeverExceeded(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	c := dial(t, s.GRPCAddr())
	ctx := context.Background()
	const concurrency, jobs = 3, 30
	specs := make([]queued.JobSpec, jobs)
	for i := range specs {
		name := "quick"
		if i%5 == 0 {
			name = "stubborn"
		}
		specs[i] = queued.NewSpec("q", name, nil)
	}
	enq, err := c.EnqueueMany(ctx, specs...)
	if err != nil {
		t.Fatalf("EnqueueMany() = %v", err)
	}
	var now, peak atomic.Int32
	track := func() func() {
		n := now.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		return func() { now.Add(-1) }
	}
	stubbornStarted := make(chan int64, jobs)
	w := queued.NewWorker(c, queued.WorkerConfig{Queues: []string{"q"}, Concurrency: concurrency})
	w.Handle("quick", func(ctx context.Context, job *queued.Job) ([]byte, error) {
		defer track()()
		time.Sleep(20 * time.Millisecond)
		return nil, nil
	})
	w.Handle("stubborn", func(ctx context.Context, job *queued.Job) ([]byte, error) {
		defer track()()
		stubbornStarted <- job.ID
		<-ctx.Done()
		time.Sleep(200 * time.Millisecond) // ignores the cancellation for a while
		return nil, ctx.Err()
	})
	run(t, w)
	for range jobs / 5 {
		select {
		case id := <-stubbornStarted:
			if _, err := c.CancelJob(ctx, id, "test"); err != nil {
				t.Fatalf("CancelJob(%d) = %v", id, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a stubborn job never started")
		}
	}
	for i, e := range enq {
		want := queued.StateCompleted
		if i%5 == 0 {
			want = queued.StateCancelled
		}
		waitState(t, c, e.ID, want, 20*time.Second)
	}
	if p := peak.Load(); p > concurrency || p < 1 {
		t.Fatalf("peak concurrent handlers = %d, want 1..%d", p, concurrency)
	}
}

func TestCancelReachesRunningHandler(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	c := dial(t, s.GRPCAddr())
	ctx := context.Background()
	started := make(chan int64, 1)
	causes := make(chan error, 1)
	w := queued.NewWorker(c, queued.WorkerConfig{Queues: []string{"q"}, Concurrency: 1})
	w.Handle("long", func(ctx context.Context, job *queued.Job) ([]byte, error) {
		started <- job.ID
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return nil, ctx.Err()
	})
	w.Handle("short", func(context.Context, *queued.Job) ([]byte, error) { return []byte("done"), nil })
	run(t, w)
	long, err := c.Enqueue(ctx, "q", "long", nil)
	if err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not start")
	}
	if _, err := c.CancelJob(ctx, long.ID, "user deleted their account"); err != nil {
		t.Fatalf("CancelJob() = %v", err)
	}
	select {
	case cause := <-causes:
		if !errors.Is(cause, queued.ErrJobCancelled) || !strings.Contains(cause.Error(), "user deleted their account") {
			t.Fatalf("context cause = %v, want ErrJobCancelled with the reason", cause)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancellation did not reach the handler")
	}
	j := waitState(t, c, long.ID, queued.StateCancelled, 5*time.Second)
	if len(j.Errors) != 0 {
		t.Errorf("cancelled job has errors %v; the worker must not nack it", j.Errors)
	}
	// The only slot is free again.
	short, err := c.Enqueue(ctx, "q", "short", nil)
	if err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	waitState(t, c, short.ID, queued.StateCompleted, 10*time.Second)
}

func TestWorkerRenewsLeasesOfLongJobs(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	c := dial(t, s.GRPCAddr())
	e, err := c.Enqueue(context.Background(), "q", "slow", nil)
	if err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	w := queued.NewWorker(c, queued.WorkerConfig{Queues: []string{"q"}, LeaseDuration: time.Second})
	w.Handle("slow", func(ctx context.Context, job *queued.Job) ([]byte, error) {
		select {
		case <-time.After(3500 * time.Millisecond): // three and a half leases
			return []byte("finished"), nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	})
	run(t, w)
	j := waitState(t, c, e.ID, queued.StateCompleted, 20*time.Second)
	if j.Attempt != 1 || string(j.Result) != "finished" {
		t.Fatalf("job = attempt %d result %q errors %v, want one attempt that finished", j.Attempt, j.Result, j.Errors)
	}
}

// TestGracefulShutdownStrandsNoJob stops a busy worker: running handlers
// finish and are acked, jobs it held but had not started go back without
// an attempt counted, nothing stays running, and another worker finishes
// the rest.
func TestGracefulShutdownStrandsNoJob(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	c := dial(t, s.GRPCAddr())
	const jobs = 40
	specs := make([]queued.JobSpec, jobs)
	for i := range specs {
		specs[i] = queued.NewSpec("q", "work", nil)
	}
	if _, err := c.EnqueueMany(context.Background(), specs...); err != nil {
		t.Fatalf("EnqueueMany() = %v", err)
	}
	first := newCounter()
	w1 := queued.NewWorker(c, queued.WorkerConfig{Queues: []string{"q"}, Concurrency: 4})
	w1.Handle("work", func(ctx context.Context, job *queued.Job) ([]byte, error) {
		time.Sleep(100 * time.Millisecond)
		first.add(job.ID)
		return []byte("w1"), nil
	})
	r1 := run(t, w1)
	eventually(t, 10*time.Second, "a few jobs done", func() bool { return first.distinct() >= 5 })
	r1.stop(30 * time.Second)

	// Every ack was committed before Run returned.
	done := countJobs(t, s, `state = 'completed'`)
	if done != first.distinct() {
		t.Fatalf("%d jobs completed, but handlers finished %d: an ack was lost or a job acked twice", done, first.distinct())
	}
	// The server may still be handing back jobs it was claiming for the
	// stream as it closed; it does so at once.
	eventually(t, 5*time.Second, "no job left running", func() bool { return countJobs(t, s, `state = 'running'`) == 0 })
	if n := countJobs(t, s, `state = 'available'`); n != jobs-done {
		t.Fatalf("%d jobs available, want the other %d", n, jobs-done)
	}
	// Jobs the worker held unstarted went back with no attempt counted.
	// Only a job still on the wire when the stream closed can have one
	// counted (the server cannot know the worker never started it), and
	// the window bounds those.
	if n := countJobs(t, s, `state = 'available' AND attempt > 0`); n > 4 {
		t.Fatalf("%d unworked jobs had an attempt counted, want at most the window of 4", n)
	}

	second := newCounter()
	w2 := queued.NewWorker(c, queued.WorkerConfig{Queues: []string{"q"}, Concurrency: 4})
	w2.Handle("work", func(ctx context.Context, job *queued.Job) ([]byte, error) {
		second.add(job.ID)
		return []byte("w2"), nil
	})
	run(t, w2)
	eventually(t, 20*time.Second, "every job completed", func() bool { return countJobs(t, s, `state = 'completed'`) == jobs })
	for id := range first.runs {
		if second.get(id) != 0 {
			t.Errorf("job %d ran on both workers", id)
		}
	}
}

// TestShutdownTimeoutCancelsHandlers: a handler that outlives the shutdown
// timeout has its context cancelled, and its error is recorded as a failed
// attempt that will be retried.
func TestShutdownTimeoutCancelsHandlers(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	c := dial(t, s.GRPCAddr())
	e, err := c.Enqueue(context.Background(), "q", "endless", nil, queued.MaxAttempts(3))
	if err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	started := make(chan struct{})
	w := queued.NewWorker(c, queued.WorkerConfig{Queues: []string{"q"}, ShutdownTimeout: 200 * time.Millisecond})
	w.Handle("endless", func(ctx context.Context, job *queued.Job) ([]byte, error) {
		close(started)
		<-ctx.Done()
		return nil, context.Cause(ctx)
	})
	r := run(t, w)
	<-started
	r.stop(30 * time.Second)
	j, err := c.GetJob(context.Background(), e.ID)
	if err != nil {
		t.Fatalf("GetJob() = %v", err)
	}
	if j.State == queued.StateRunning || j.State.Finished() || len(j.Errors) != 1 || !strings.Contains(j.Errors[0].Message, "shutdown timeout") {
		t.Fatalf("job = %s errors %v, want waiting for a retry after a shutdown-timeout error", j.State, j.Errors)
	}
}

// TestWorkerReconnectsAfterServerCrash kills the server under a busy
// worker and starts a new one on the same database and address. Every job
// completes; a job runs again only under a new lease (a new attempt),
// never twice under one.
func TestWorkerReconnectsAfterServerCrash(t *testing.T) {
	t.Parallel()
	db := storetestDatabase(t)
	s1 := queuedtest.StartOn(t, db)
	addr := s1.GRPCAddr()
	c := dial(t, addr)
	const jobs = 200
	specs := make([]queued.JobSpec, jobs)
	for i := range specs {
		specs[i] = queued.NewSpec("q", "work", nil)
	}
	enq, err := c.EnqueueMany(context.Background(), specs...)
	if err != nil {
		t.Fatalf("EnqueueMany() = %v", err)
	}
	runs := newCounter()
	w := queued.NewWorker(c, queued.WorkerConfig{
		Queues: []string{"q"}, Concurrency: 4, LeaseDuration: 3 * time.Second,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond,
	})
	w.Handle("work", func(ctx context.Context, job *queued.Job) ([]byte, error) {
		runs.add(job.ID)
		time.Sleep(30 * time.Millisecond)
		return []byte("done"), nil
	})
	run(t, w)
	eventually(t, 20*time.Second, "some jobs done before the crash", func() bool { return runs.distinct() >= 30 })
	s1.Kill()
	time.Sleep(300 * time.Millisecond) // the worker sees the server gone
	s2 := queuedtest.StartOn(t, db, queuedtest.WithGRPCAddr(addr))
	eventually(t, 60*time.Second, "every job completed on the new server", func() bool {
		return countJobs(t, s2, `state = 'completed'`) == jobs
	})
	again := 0
	for _, e := range enq {
		j, err := c.GetJob(context.Background(), e.ID)
		if err != nil {
			t.Fatalf("GetJob() = %v", err)
		}
		n := runs.get(e.ID)
		if n < 1 || int32(n) > j.Attempt {
			t.Errorf("job %d ran %d times in %d attempts", e.ID, n, j.Attempt)
		}
		if n > 1 {
			again++
		}
	}
	t.Logf("%d of %d jobs ran again after the crash, each under a new lease", again, jobs)
}

// TestWorkerSurvivesServerDrain: a draining server ends the stream once the
// worker holds nothing; the worker reconnects to the next server.
func TestWorkerSurvivesServerDrain(t *testing.T) {
	t.Parallel()
	db := storetestDatabase(t)
	s1 := queuedtest.StartOn(t, db)
	addr := s1.GRPCAddr()
	c := dial(t, addr)
	ctx := context.Background()
	var mu sync.Mutex
	var results [][]byte
	w := queued.NewWorker(c, queued.WorkerConfig{Queues: []string{"q"}, ReconnectMin: 50 * time.Millisecond, ReconnectMax: 300 * time.Millisecond})
	w.Handle("work", func(ctx context.Context, job *queued.Job) ([]byte, error) {
		mu.Lock()
		results = append(results, job.Payload)
		mu.Unlock()
		return nil, nil
	})
	run(t, w)
	e1, err := c.Enqueue(ctx, "q", "work", []byte("before"))
	if err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	waitState(t, c, e1.ID, queued.StateCompleted, 10*time.Second)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s1.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
	queuedtest.StartOn(t, db, queuedtest.WithGRPCAddr(addr))
	var e2 queued.Enqueued
	eventually(t, 10*time.Second, "the new server accepts jobs", func() bool {
		e2, err = c.Enqueue(ctx, "q", "work", []byte("after"))
		return err == nil
	})
	waitState(t, c, e2.ID, queued.StateCompleted, 15*time.Second)
	mu.Lock()
	defer mu.Unlock()
	if len(results) != 2 || !bytes.Equal(results[1], []byte("after")) {
		t.Fatalf("handled %q, want before and after", results)
	}
}

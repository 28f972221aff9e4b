package queued_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	queued "github.com/queued-dev/queued/clients/go"
	"github.com/queued-dev/queued/internal/queuedtest"
)

func TestFlowBuilderRunsNestedFlowWithResultsAndContinuation(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	c := dial(t, s.GRPCAddr())
	ctx := context.Background()

	flow, err := c.EnqueueFlow(ctx, queued.NewFlow(queued.NewSpec("reports", "assemble", nil)).
		Child("sales", queued.NewFlow(queued.NewSpec("etl", "sum", nil)).
			Child("q1", queued.NewFlow(queued.NewSpec("etl", "extract", []byte("10")))).
			Child("q2", queued.NewFlow(queued.NewSpec("etl", "extract", []byte("20"))))).
		Child("optional", queued.NewFlow(queued.NewSpec("etl", "flaky", nil)), queued.IgnoreFailure))
	if err != nil {
		t.Fatalf("EnqueueFlow() = %v", err)
	}
	if flow.Root.Job.State != queued.StateWaitingChildren || len(flow.Root.Children) != 2 {
		t.Fatalf("enqueued flow root = %+v", flow.Root)
	}

	w := queued.NewWorker(c, queued.WorkerConfig{Queues: []string{"etl", "reports"}, Concurrency: 4})
	w.Handle("extract", func(ctx context.Context, job *queued.Job) ([]byte, error) { return job.Payload, nil })
	w.Handle("flaky", func(ctx context.Context, job *queued.Job) ([]byte, error) {
		return nil, queued.Permanent(errors.New("upstream down"))
	})
	w.Handle("sum", func(ctx context.Context, job *queued.Job) ([]byte, error) {
		q1, _ := job.Child("q1")
		q2, _ := job.Child("q2")
		return []byte(string(q1.Result) + "+" + string(q2.Result)), nil
	})
	w.Handle("assemble", func(ctx context.Context, job *queued.Job) ([]byte, error) {
		sales, _ := job.Child("sales")
		opt, _ := job.Child("optional")
		job.Then(queued.NewFlow(queued.NewSpec("mail", "send_report", sales.Result)))
		return []byte("sales=" + string(sales.Result) + " optional=" + string(opt.State) + ":" + opt.Error), nil
	})
	run(t, w)

	root := waitState(t, c, flow.ID, queued.StateCompleted, 10*time.Second)
	if want := "sales=10+20 optional=failed:upstream down"; string(root.Result) != want {
		t.Fatalf("root result = %q, want %q", root.Result, want)
	}
	got, err := c.GetFlow(ctx, flow.Root.Children[0].Children[1].Job.ID)
	if err != nil {
		t.Fatalf("GetFlow() = %v", err)
	}
	if got.ID != flow.ID || got.Root.Children[1].Job.State != queued.StateFailed || got.Root.Children[1].OnFailure != queued.IgnoreFailure {
		t.Fatalf("GetFlow() = %+v", got)
	}
	if n := countJobs(t, s, "queue = 'mail' AND name = 'send_report' AND payload = '10+20'"); n != 1 {
		t.Fatalf("%d continuation jobs, want 1", n)
	}
}

func TestFlowContinuationIsDroppedWhenTheHandlerFails(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	c := dial(t, s.GRPCAddr())
	e, err := c.Enqueue(context.Background(), "q", "work", nil, queued.MaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	w := queued.NewWorker(c, queued.WorkerConfig{Queues: []string{"q"}})
	w.Handle("work", func(ctx context.Context, job *queued.Job) ([]byte, error) {
		job.Then(queued.NewFlow(queued.NewSpec("next", "never", nil)))
		return nil, errors.New("changed my mind")
	})
	run(t, w)
	j := waitState(t, c, e.ID, queued.StateFailed, 10*time.Second)
	if !strings.Contains(j.Errors[0].Message, "changed my mind") {
		t.Fatalf("errors = %v", j.Errors)
	}
	if n := countJobs(t, s, "queue = 'next'"); n != 0 {
		t.Fatalf("%d continuation jobs of a failed handler", n)
	}
}

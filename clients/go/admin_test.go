package queued_test

import (
	"context"
	"errors"
	"testing"
	"time"

	queued "github.com/queued-dev/queued/clients/go"
	"github.com/queued-dev/queued/internal/queuedtest"
)

func TestAdminListRetryDeleteAndQueues(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	c := dial(t, s.GRPCAddr())
	ctx := context.Background()

	bad, err := c.Enqueue(ctx, "admin", "explode", nil, queued.MaxAttempts(4))
	if err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	w := queued.NewWorker(c, queued.WorkerConfig{Queues: []string{"admin"}, Concurrency: 1})
	w.Handle("explode", func(context.Context, *queued.Job) ([]byte, error) { return nil, queued.Permanent(errors.New("kaboom")) })
	r := run(t, w)
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// Wait reports the failure as its error, with the job.
	if j, err := c.Wait(waitCtx, bad.ID); j == nil || j.State != queued.StateFailed {
		t.Fatalf("Wait() = %v, %v; want the failed job", j, err)
	}
	r.stop(30 * time.Second)
	for range 4 {
		if _, err := c.Enqueue(ctx, "admin", "later", nil); err != nil {
			t.Fatalf("Enqueue() = %v", err)
		}
	}

	// Every job, two per page, newest first.
	var ids []int64
	for j, err := range c.AllJobs(ctx, queued.JobFilter{Queue: "admin", Limit: 2}) {
		if err != nil {
			t.Fatalf("AllJobs() = %v", err)
		}
		ids = append(ids, j.ID)
	}
	if len(ids) != 5 || ids[len(ids)-1] != bad.ID {
		t.Fatalf("AllJobs() ids = %v, want 5 jobs ending with the oldest, %d", ids, bad.ID)
	}
	page, err := c.ListJobs(ctx, queued.JobFilter{States: []queued.State{queued.StateFailed}}, "")
	if err != nil || len(page.Jobs) != 1 || page.Jobs[0].ID != bad.ID {
		t.Fatalf("ListJobs(failed) = %+v, %v; want job %d", page, err, bad.ID)
	}

	qs, err := c.ListQueues(ctx)
	if err != nil || len(qs) != 1 || qs[0].Name != "admin" || qs[0].Counts[queued.StateFailed] != 1 || qs[0].Counts[queued.StateAvailable] != 4 {
		t.Fatalf("ListQueues() = %+v, %v; want admin with 1 failed and 4 available", qs, err)
	}

	if _, err := c.DeleteJob(ctx, ids[0]); !queued.IsLeaseLost(err) { // FAILED_PRECONDITION
		t.Errorf("DeleteJob(available) = %v, want FAILED_PRECONDITION", err)
	}
	j, err := c.RetryJob(ctx, bad.ID)
	if err != nil || j.State != queued.StateAvailable || j.Attempt != 0 || j.MaxAttempts != 4 || len(j.Errors) != 1 {
		t.Fatalf("RetryJob() = %+v, %v; want available, attempt 0 of 4, the error kept", j, err)
	}
	if _, err := c.CancelJob(ctx, bad.ID, "done with it"); err != nil {
		t.Fatalf("CancelJob() = %v", err)
	}
	if st, err := c.DeleteJob(ctx, bad.ID); err != nil || st != queued.StateCancelled {
		t.Fatalf("DeleteJob(cancelled) = %v, %v", st, err)
	}
	if _, err := c.GetJob(ctx, bad.ID); !queued.IsNotFound(err) {
		t.Fatalf("GetJob(deleted) = %v, want NOT_FOUND", err)
	}
}

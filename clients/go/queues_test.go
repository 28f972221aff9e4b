package queued_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	queued "github.com/queued-dev/queued/clients/go"
	"github.com/queued-dev/queued/internal/queuedtest"
)

func TestPauseAndResumeAQueueUnderARunningWorker(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	c := dial(t, s.GRPCAddr())
	ctx := context.Background()

	q, err := c.PauseQueue(ctx, "mail")
	if err != nil || !q.Paused || q.Name != "mail" || q.UpdatedAt.IsZero() {
		t.Fatalf("PauseQueue() = %+v, %v", q, err)
	}
	var handled atomic.Int32
	w := queued.NewWorker(c, queued.WorkerConfig{Queues: []string{"mail"}, Concurrency: 4})
	w.Handle("send", func(ctx context.Context, job *queued.Job) ([]byte, error) {
		handled.Add(1)
		return nil, nil
	})
	run(t, w)
	var ids []int64
	for range 3 {
		e, err := c.Enqueue(ctx, "mail", "send", nil)
		if err != nil {
			t.Fatalf("Enqueue() into a paused queue = %v", err)
		}
		ids = append(ids, e.ID)
	}
	time.Sleep(time.Second) // the worker has room; nothing may arrive
	if n := handled.Load(); n != 0 {
		t.Fatalf("handled %d jobs of a paused queue", n)
	}
	if q, err := c.GetQueue(ctx, "mail"); err != nil || q.Counts.Available != 3 || !q.Paused {
		t.Fatalf("GetQueue() = %+v, %v; want paused with 3 available", q, err)
	}

	if q, err := c.ResumeQueue(ctx, "mail"); err != nil || q.Paused {
		t.Fatalf("ResumeQueue() = %+v, %v", q, err)
	}
	for _, id := range ids {
		waitState(t, c, id, queued.StateCompleted, 10*time.Second)
	}
}

func TestRateLimitThroughTheSDK(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	c := dial(t, s.GRPCAddr())
	ctx := context.Background()

	q, err := c.SetRateLimit(ctx, "api", 20, 500*time.Millisecond)
	if err != nil || q.RateLimit == nil || *q.RateLimit != (queued.RateLimit{Max: 20, Per: 500 * time.Millisecond}) {
		t.Fatalf("SetRateLimit() = %+v, %v", q, err)
	}
	all, err := c.ListQueueSettings(ctx)
	if err != nil || len(all) != 1 || all[0].Name != "api" || all[0].RateLimit == nil {
		t.Fatalf("ListQueueSettings() = %+v, %v", all, err)
	}
	if _, err := c.SetRateLimit(ctx, "api", -1, time.Second); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("SetRateLimit(-1) = %v, want InvalidArgument", err)
	}
	if q, err := c.ClearRateLimit(ctx, "api"); err != nil || q.RateLimit != nil {
		t.Fatalf("ClearRateLimit() = %+v, %v", q, err)
	}
}

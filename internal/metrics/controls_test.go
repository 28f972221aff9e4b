package metrics_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/internal/queuedtest"
)

func TestPausedAndLimitedQueuesAreExported(t *testing.T) {
	t.Parallel()
	srv := queuedtest.Start(t, queuedtest.WithHTTP())
	ctx := context.Background()
	adm := queuedv1.NewQueueAdminServiceClient(srv.Conn)
	if m := scrape(t, srv); m[`queued_queues_paused`] != 0 {
		t.Fatalf("queued_queues_paused = %v before any pause, want 0", m[`queued_queues_paused`])
	}
	for _, q := range []string{"a", "b"} {
		if _, err := adm.PauseQueue(ctx, &queuedv1.PauseQueueRequest{Queue: q}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := adm.SetRateLimit(ctx, &queuedv1.SetRateLimitRequest{Queue: "c", Max: 20, Per: durationpb.New(500 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.ResumeQueue(ctx, &queuedv1.ResumeQueueRequest{Queue: "b"}); err != nil {
		t.Fatal(err)
	}
	m := scrape(t, srv)
	if m[`queued_queues_paused`] != 1 || m[`queued_queue_paused{queue="a"}`] != 1 || m[`queued_queue_rate_limit_per_second{queue="c"}`] != 40 {
		t.Fatalf("paused = %v, paused{a} = %v, rate_limit{c} = %v; want 1, 1, 40", m[`queued_queues_paused`],
			m[`queued_queue_paused{queue="a"}`], m[`queued_queue_rate_limit_per_second{queue="c"}`])
	}
	if _, ok := m[`queued_queue_paused{queue="b"}`]; ok {
		t.Fatalf("resumed queue b still reported paused")
	}
}

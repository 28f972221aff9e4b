package grpcserver_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/internal/queuedtest"
	"github.com/queued-dev/queued/service"
)

func TestWatchJobReportsEveryChangeThenItsResult(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	id := enqueue(t, s, spec("w"))[0].GetId()
	wa := openWatch(t, s.Conn, &queuedv1.WatchRequest{JobIds: []int64{id}})
	if e := wa.wantJobEvent(kindCurrent, id); e.GetJob().GetState() != queuedv1.JobState_JOB_STATE_AVAILABLE {
		t.Fatalf("current state = %v, want available", e.GetJob().GetState())
	}
	wa.live()

	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"w"}, Window: 1})
	j := w.next(5 * time.Second)
	if e := wa.wantJobEvent(kindLeased, id); e.GetJob().GetAttempt() != 1 {
		t.Fatalf("leased attempt = %d, want 1", e.GetJob().GetAttempt())
	}
	if _, err := s.Client.UpdateProgress(context.Background(), &queuedv1.UpdateProgressRequest{JobId: id, LeaseToken: j.GetLeaseToken(), Progress: []byte("50%")}); err != nil {
		t.Fatalf("UpdateProgress() = %v", err)
	}
	if e := wa.wantJobEvent(kindProgress, id); string(e.GetJob().GetProgress()) != "50%" {
		t.Fatalf("progress = %q, want 50%%", e.GetJob().GetProgress())
	}
	w.ack(j, []byte("answer"))
	if e := wa.wantJobEvent(kindCompleted, id); string(e.GetJob().GetResult()) != "answer" || e.GetJob().GetState() != queuedv1.JobState_JOB_STATE_COMPLETED {
		t.Fatalf("completed event job = %v, want result answer", e.GetJob())
	}
}

func TestWatchReportsAJobThatFinishedBeforeTheCall(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	id := enqueue(t, s, spec("w"))[0].GetId()
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"w"}, Window: 1})
	w.ack(w.next(5*time.Second), []byte("early"))
	eventually(t, 10*time.Second, "job completed", func() bool {
		return getJob(t, s, id).GetState() == queuedv1.JobState_JOB_STATE_COMPLETED
	})
	wa := openWatch(t, s.Conn, &queuedv1.WatchRequest{JobIds: []int64{id}})
	e := wa.wantJobEvent(kindCurrent, id)
	if e.GetJob().GetState() != queuedv1.JobState_JOB_STATE_COMPLETED || string(e.GetJob().GetResult()) != "early" {
		t.Fatalf("current = %v, want completed with result early", e.GetJob())
	}
}

func TestWatchReportsRetryFailureAndCancellation(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	ids := enqueue(t, s,
		&queuedv1.JobSpec{Queue: "f", Name: "flaky", MaxAttempts: 2},
		&queuedv1.JobSpec{Queue: "c", Name: "slow"})
	failing, cancelled := ids[0].GetId(), ids[1].GetId()
	wa := openWatch(t, s.Conn, &queuedv1.WatchRequest{JobIds: []int64{failing, cancelled}})
	wa.wantJobEvent(kindCurrent, failing)
	wa.wantJobEvent(kindCurrent, cancelled)
	wa.live()

	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"f"}, Window: 1})
	nack := func(j *queuedv1.LeasedJob, msg string) {
		if _, err := s.Client.Nack(context.Background(), &queuedv1.NackRequest{JobId: j.GetJob().GetId(), LeaseToken: j.GetLeaseToken(), Error: msg, RetryDelay: dur(2 * time.Second)}); err != nil {
			t.Fatalf("Nack() = %v", err)
		}
	}
	j := w.next(5 * time.Second)
	wa.wantJobEvent(kindLeased, failing)
	nack(j, "boom 1")
	e := wa.wantJobEvent(kindRetry, failing)
	if e.GetError().GetMessage() != "boom 1" || e.GetError().GetAttempt() != 1 || e.GetJob().GetRunAt() == nil {
		t.Fatalf("retry event error = %v run_at %v, want boom 1 of attempt 1 and a run time", e.GetError(), e.GetJob().GetRunAt())
	}
	// The retry comes due (AVAILABLE) and is leased again; those events
	// may coalesce, so look for the failure.
	nack(w.next(15*time.Second), "boom 2")
	e = wa.untilKind(kindFailed)
	if e.GetError().GetMessage() != "boom 2" || len(e.GetJob().GetErrors()) != 2 {
		t.Fatalf("failed event error = %v, errors %v; want boom 2 and both errors", e.GetError(), e.GetJob().GetErrors())
	}

	if _, err := s.Client.CancelJob(context.Background(), &queuedv1.CancelJobRequest{Id: cancelled}); err != nil {
		t.Fatalf("CancelJob() = %v", err)
	}
	wa.wantJobEvent(kindCancelled, cancelled)
}

func TestWatchQueueFiltersByNameAndKind(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	wa := openWatch(t, s.Conn, &queuedv1.WatchRequest{Queue: "q", Names: []string{"wanted"}, Kinds: []queuedv1.WatchEventKind{kindCompleted}})
	wa.live()
	ids := enqueue(t, s,
		&queuedv1.JobSpec{Queue: "q", Name: "other"},
		&queuedv1.JobSpec{Queue: "q", Name: "wanted"},
		&queuedv1.JobSpec{Queue: "elsewhere", Name: "wanted"})
	stop := make(chan struct{})
	defer close(stop)
	workAll(t, s, "q", stop)
	workAll(t, s, "elsewhere", stop)
	wa.wantJobEvent(kindCompleted, ids[1].GetId())
	// Nothing else matches: wait until the others are done and see that
	// only checkpoints follow.
	eventually(t, 10*time.Second, "all jobs completed", func() bool {
		return countRows(t, s, `state = 'completed'`) == 3
	})
	select {
	case e := <-wa.events:
		if e.GetKind() != kindCheckpoint {
			t.Fatalf("unexpected event %v for job %d", e.GetKind(), e.GetJob().GetId())
		}
	case <-time.After(500 * time.Millisecond):
	}
}

func TestWatchRefusesBadRequests(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	id := enqueue(t, s, spec("q"))[0].GetId()
	for _, tc := range []struct {
		name  string
		req   *queuedv1.WatchRequest
		code  codes.Code
		field string
	}{
		{"no filter", &queuedv1.WatchRequest{}, codes.InvalidArgument, "job_ids"},
		{"ids and queue", &queuedv1.WatchRequest{JobIds: []int64{id}, Queue: "q"}, codes.InvalidArgument, "queue"},
		{"names without queue", &queuedv1.WatchRequest{JobIds: []int64{id}, Names: []string{"x"}}, codes.InvalidArgument, "names"},
		{"negative id", &queuedv1.WatchRequest{JobIds: []int64{-1}}, codes.InvalidArgument, "job_ids[0]"},
		{"flow", &queuedv1.WatchRequest{FlowId: id}, codes.InvalidArgument, "flow_id"},
		{"unknown kind", &queuedv1.WatchRequest{Queue: "q", Kinds: []queuedv1.WatchEventKind{99}}, codes.InvalidArgument, "kinds[0]"},
		{"garbage cursor", &queuedv1.WatchRequest{Queue: "q", Cursor: "nope"}, codes.InvalidArgument, "cursor"},
		{"cursor of another database", &queuedv1.WatchRequest{Queue: "q", Cursor: service.Cursor{Seen: service.Snapshot{Xmin: 1 << 40, Xmax: 1 << 40}, At: time.Now()}.String()}, codes.InvalidArgument, "cursor"},
		{"unknown job", &queuedv1.WatchRequest{JobIds: []int64{id, id + 1000}}, codes.NotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := openWatch(t, s.Conn, tc.req).end(10 * time.Second)
			wantCode(t, err, tc.code)
			if tc.field != "" && !strings.Contains(status.Convert(err).Message(), tc.field) {
				t.Fatalf("error %v does not name %q", err, tc.field)
			}
		})
	}
}

func TestWatchEventKindsMatchTheProto(t *testing.T) {
	t.Parallel()
	for k, want := range map[service.EventKind]queuedv1.WatchEventKind{
		service.EventCurrent: kindCurrent, service.EventEnqueued: kindEnqueued,
		service.EventAvailable: queuedv1.WatchEventKind_WATCH_EVENT_KIND_AVAILABLE, service.EventLeased: kindLeased,
		service.EventProgress: kindProgress, service.EventRetryScheduled: kindRetry,
		service.EventReleased:        queuedv1.WatchEventKind_WATCH_EVENT_KIND_RELEASED,
		service.EventWaitingChildren: queuedv1.WatchEventKind_WATCH_EVENT_KIND_WAITING_CHILDREN,
		service.EventCompleted:       kindCompleted, service.EventFailed: kindFailed,
		service.EventCancelled: kindCancelled, service.EventCheckpoint: kindCheckpoint,
	} {
		if int32(k) != int32(want) {
			t.Errorf("service kind %d = proto %v (%d); the numbers must match", k, want, want)
		}
	}
}

func TestWatchEndsWithUnavailableWhenTheServerDrains(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	wa := openWatch(t, s.Conn, &queuedv1.WatchRequest{Queue: "q"})
	wa.live()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	wantCode(t, wa.end(10*time.Second), codes.Unavailable)
	if err := <-done; err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
}

package grpcserver_test

import (
	"bytes"
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

func TestJobLifecycleEnqueueLeaseAckGet(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	ids := enqueue(t, s, &queuedv1.JobSpec{Queue: "email", Name: "send_welcome_email", Payload: []byte(`{"user":1}`), Metadata: map[string]string{"trace": "abc"}})
	if got := ids[0].GetState(); got != queuedv1.JobState_JOB_STATE_AVAILABLE {
		t.Fatalf("enqueued state = %v, want available", got)
	}
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"email"}, Window: 4, WorkerId: "w1"})
	j := w.next(5 * time.Second)
	if j.GetJob().GetId() != ids[0].GetId() || string(j.GetJob().GetPayload()) != `{"user":1}` || j.GetJob().GetMetadata()["trace"] != "abc" {
		t.Fatalf("leased job = %v, want the enqueued one", j.GetJob())
	}
	if j.GetJob().GetAttempt() != 1 || j.GetLeaseToken() == "" {
		t.Fatalf("attempt = %d, token %q; want 1 and a token", j.GetJob().GetAttempt(), j.GetLeaseToken())
	}
	running := getJob(t, s, ids[0].GetId())
	if running.GetState() != queuedv1.JobState_JOB_STATE_RUNNING || running.GetLeasedBy() != "w1" {
		t.Fatalf("running job = state %v leased_by %q", running.GetState(), running.GetLeasedBy())
	}
	w.send(&queuedv1.LeaseRequest{Ref: 7, Msg: &queuedv1.LeaseRequest_Ack{Ack: &queuedv1.AckRequest{JobId: j.GetJob().GetId(), LeaseToken: j.GetLeaseToken(), Result: []byte("sent")}}})
	select {
	case m := <-w.events:
		if r := m.GetReply(); r == nil || r.GetRef() != 7 || r.GetCode() != 0 {
			t.Fatalf("reply = %v, want ok for ref 7", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reply to the ack")
	}
	done := getJob(t, s, ids[0].GetId())
	if done.GetState() != queuedv1.JobState_JOB_STATE_COMPLETED || !bytes.Equal(done.GetResult(), []byte("sent")) || done.GetFinishedAt() == nil {
		t.Fatalf("finished job = %v, want completed with result", done)
	}
}

func TestUnaryAckAndStaleAcksAreRefused(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	ids := enqueue(t, s, spec("q"), spec("q"))
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"q"}, Window: 2})
	a, b := w.next(5*time.Second), w.next(5*time.Second)
	ctx := context.Background()

	// Another job's token is not this job's lease.
	_, err := s.Client.Ack(ctx, &queuedv1.AckRequest{JobId: a.GetJob().GetId(), LeaseToken: b.GetLeaseToken()})
	wantCode(t, err, codes.FailedPrecondition)
	_, err = s.Client.Ack(ctx, &queuedv1.AckRequest{JobId: a.GetJob().GetId(), LeaseToken: "not-a-token"})
	wantCode(t, err, codes.FailedPrecondition)
	if got := getJob(t, s, a.GetJob().GetId()).GetState(); got != queuedv1.JobState_JOB_STATE_RUNNING {
		t.Fatalf("state after refused acks = %v, want running", got)
	}

	if _, err := s.Client.Ack(ctx, &queuedv1.AckRequest{JobId: a.GetJob().GetId(), LeaseToken: a.GetLeaseToken(), Result: []byte("r1")}); err != nil {
		t.Fatalf("Ack() = %v", err)
	}
	// A repeated ack, nack or extend changes nothing.
	_, err = s.Client.Ack(ctx, &queuedv1.AckRequest{JobId: a.GetJob().GetId(), LeaseToken: a.GetLeaseToken(), Result: []byte("r2")})
	wantCode(t, err, codes.FailedPrecondition)
	_, err = s.Client.Nack(ctx, &queuedv1.NackRequest{JobId: a.GetJob().GetId(), LeaseToken: a.GetLeaseToken(), Error: "late"})
	wantCode(t, err, codes.FailedPrecondition)
	_, err = s.Client.Extend(ctx, &queuedv1.ExtendRequest{JobId: a.GetJob().GetId(), LeaseToken: a.GetLeaseToken()})
	wantCode(t, err, codes.FailedPrecondition)
	got := getJob(t, s, ids[0].GetId())
	if got.GetState() != queuedv1.JobState_JOB_STATE_COMPLETED || string(got.GetResult()) != "r1" || len(got.GetErrors()) != 0 {
		t.Fatalf("job after stale calls = %v, want completed with r1 and no errors", got)
	}
	// An unknown job is NotFound, not a lost lease.
	_, err = s.Client.Ack(ctx, &queuedv1.AckRequest{JobId: 999999, LeaseToken: a.GetLeaseToken()})
	wantCode(t, err, codes.NotFound)
}

func TestNackRetriesWithBackoffUntilFailedKeepingEveryError(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	sp := spec("retry")
	sp.MaxAttempts = 3
	sp.Backoff = &queuedv1.Backoff{Kind: queuedv1.Backoff_KIND_FIXED, Base: dur(50 * time.Millisecond)}
	id := enqueue(t, s, sp)[0].GetId()
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"retry"}, Window: 1})
	ctx := context.Background()
	for attempt := int32(1); attempt <= 3; attempt++ {
		j := w.next(5 * time.Second)
		if j.GetJob().GetAttempt() != attempt {
			t.Fatalf("attempt = %d, want %d", j.GetJob().GetAttempt(), attempt)
		}
		resp, err := s.Client.Nack(ctx, &queuedv1.NackRequest{JobId: id, LeaseToken: j.GetLeaseToken(), Error: "boom " + string(rune('0'+attempt))})
		if err != nil {
			t.Fatalf("Nack() = %v", err)
		}
		want := queuedv1.JobState_JOB_STATE_SCHEDULED
		if attempt == 3 {
			want = queuedv1.JobState_JOB_STATE_FAILED
		}
		if resp.GetState() != want {
			t.Fatalf("after attempt %d state = %v, want %v", attempt, resp.GetState(), want)
		}
	}
	w.expectNone(300 * time.Millisecond)
	job := getJob(t, s, id)
	if job.GetState() != queuedv1.JobState_JOB_STATE_FAILED || len(job.GetErrors()) != 3 {
		t.Fatalf("job = %v, want failed with 3 errors", job)
	}
	for i, e := range job.GetErrors() {
		if e.GetAttempt() != int32(i+1) || !strings.HasPrefix(e.GetMessage(), "boom") {
			t.Fatalf("errors[%d] = %v", i, e)
		}
	}
}

func TestNackBackoffDelaysTheRetry(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	sp := spec("slow-retry")
	sp.Backoff = &queuedv1.Backoff{Kind: queuedv1.Backoff_KIND_EXPONENTIAL, Base: dur(time.Second), Max: dur(time.Minute)}
	id := enqueue(t, s, sp)[0].GetId()
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"slow-retry"}, Window: 1})
	j := w.next(5 * time.Second)
	before := time.Now()
	resp, err := s.Client.Nack(context.Background(), &queuedv1.NackRequest{JobId: id, LeaseToken: j.GetLeaseToken(), Error: "later"})
	if err != nil {
		t.Fatalf("Nack() = %v", err)
	}
	if next := resp.GetNextRunAt().AsTime(); next.Before(before.Add(700 * time.Millisecond)) {
		t.Fatalf("next run at %v, want about a second (0.2 jitter) after %v", next, before)
	}
	w.expectNone(500 * time.Millisecond)
	j2 := w.next(5 * time.Second)
	if j2.GetJob().GetAttempt() != 2 || time.Since(before) < 700*time.Millisecond {
		t.Fatalf("retry came after %v with attempt %d", time.Since(before), j2.GetJob().GetAttempt())
	}
}

func TestNonRetryableNackFailsAtOnce(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	id := enqueue(t, s, spec("q"))[0].GetId()
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"q"}, Window: 1})
	j := w.next(5 * time.Second)
	w.send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Nack{Nack: &queuedv1.NackRequest{JobId: id, LeaseToken: j.GetLeaseToken(), Error: "bad address", NonRetryable: true}}})
	eventually(t, 5*time.Second, "job failed", func() bool {
		return getJob(t, s, id).GetState() == queuedv1.JobState_JOB_STATE_FAILED
	})
	job := getJob(t, s, id)
	if job.GetAttempt() != 1 || len(job.GetErrors()) != 1 || job.GetErrors()[0].GetMessage() != "bad address" {
		t.Fatalf("job = %v, want one attempt with its error", job)
	}
}

func TestExpiredLeaseIsTakenBackAndOldTokenRefused(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	id := enqueue(t, s, spec("q"))[0].GetId()
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"q"}, Window: 1, LeaseDuration: dur(300 * time.Millisecond)})
	first := w.next(5 * time.Second)
	// The worker holds it and never extends: the sweeper takes it back, the
	// worker is told, and the job comes round again with attempt 2.
	select {
	case m := <-w.events:
		if c := m.GetCancelled(); c == nil || c.GetJobId() != id || c.GetKind() != queuedv1.JobCancelled_KIND_LEASE_EXPIRED || !strings.Contains(c.GetReason(), "expired") {
			t.Fatalf("event = %v, want cancellation for the expired lease", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("worker was not told its lease expired")
	}
	second := w.next(5 * time.Second)
	if second.GetJob().GetId() != id || second.GetJob().GetAttempt() != 2 || second.GetLeaseToken() == first.GetLeaseToken() {
		t.Fatalf("redelivery = %v, want same job, attempt 2, new token", second)
	}
	_, err := s.Client.Ack(context.Background(), &queuedv1.AckRequest{JobId: id, LeaseToken: first.GetLeaseToken()})
	wantCode(t, err, codes.FailedPrecondition)
	if _, err := s.Client.Ack(context.Background(), &queuedv1.AckRequest{JobId: id, LeaseToken: second.GetLeaseToken()}); err != nil {
		t.Fatalf("Ack() with the current token = %v", err)
	}
	if errs := getJob(t, s, id).GetErrors(); len(errs) != 1 || errs[0].GetMessage() != "lease expired" {
		t.Fatalf("errors = %v, want the expiry recorded", errs)
	}
}

func TestExtendKeepsALeaseAlive(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	id := enqueue(t, s, spec("q"))[0].GetId()
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"q"}, Window: 1, LeaseDuration: dur(400 * time.Millisecond)})
	j := w.next(5 * time.Second)
	for range 6 {
		time.Sleep(150 * time.Millisecond)
		if _, err := s.Client.Extend(context.Background(), &queuedv1.ExtendRequest{JobId: id, LeaseToken: j.GetLeaseToken()}); err != nil {
			t.Fatalf("Extend() = %v", err)
		}
	}
	if _, err := s.Client.Ack(context.Background(), &queuedv1.AckRequest{JobId: id, LeaseToken: j.GetLeaseToken()}); err != nil {
		t.Fatalf("Ack() after extensions = %v", err)
	}
	if got := getJob(t, s, id); got.GetAttempt() != 1 || got.GetState() != queuedv1.JobState_JOB_STATE_COMPLETED {
		t.Fatalf("job = %v, want completed on its first attempt", got)
	}
}

func TestStreamDropRequeuesPromptlyCountingTheAttempt(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	id := enqueue(t, s, spec("q"))[0].GetId()
	a := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"q"}, Window: 1, LeaseDuration: dur(time.Hour)})
	a.next(5 * time.Second)
	dropped := time.Now()
	a.cancel() // the worker dies: its stream ends without a goodbye
	b := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"q"}, Window: 1})
	j := b.next(5 * time.Second)
	if took := time.Since(dropped); took > time.Second {
		t.Fatalf("job came back after %v, want within a second", took)
	}
	if j.GetJob().GetId() != id || j.GetJob().GetAttempt() != 2 {
		t.Fatalf("redelivered = %v, want job %d attempt 2", j.GetJob(), id)
	}
	if errs := j.GetJob().GetErrors(); len(errs) != 1 || !strings.Contains(errs[0].GetMessage(), "worker went away") {
		t.Fatalf("errors = %v, want the worker's departure recorded", errs)
	}
}

func TestReleaseHandsBackWithoutCountingAnAttempt(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	id := enqueue(t, s, spec("q"))[0].GetId()
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"q"}, Window: 1})
	j := w.next(5 * time.Second)
	w.send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Release{Release: &queuedv1.ReleaseRequest{JobId: id, LeaseToken: j.GetLeaseToken()}}})
	again := w.next(5 * time.Second)
	if again.GetJob().GetId() != id || again.GetJob().GetAttempt() != 1 || len(again.GetJob().GetErrors()) != 0 {
		t.Fatalf("after release = %v, want same job, still attempt 1, no errors", again.GetJob())
	}
}

func TestWindowBoundsJobsHeldAndCanBeResized(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	for range 10 {
		enqueue(t, s, spec("q"))
	}
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"q"}, Window: 3})
	held := []*queuedv1.LeasedJob{w.next(5 * time.Second), w.next(5 * time.Second), w.next(5 * time.Second)}
	w.expectNone(300 * time.Millisecond)
	w.ack(held[0], nil)
	w.next(5 * time.Second)
	w.expectNone(300 * time.Millisecond)

	// Pause: acks free slots but nothing new comes.
	w.send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_SetWindow{SetWindow: &queuedv1.SetWindow{Window: 0}}})
	w.ack(held[1], nil)
	w.expectNone(300 * time.Millisecond)
	// Resume wider.
	w.send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_SetWindow{SetWindow: &queuedv1.SetWindow{Window: 5}}})
	for range 3 {
		w.next(5 * time.Second)
	}
	w.expectNone(300 * time.Millisecond)
	if got := countRows(t, s, "state = 'running'"); got != 5 {
		t.Fatalf("running jobs = %d, want 5 (the window)", got)
	}
}

func TestPriorityThenRunAtOrder(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	mk := func(name string, prio int32) *queuedv1.JobSpec {
		return &queuedv1.JobSpec{Queue: "q", Name: name, Priority: prio}
	}
	enqueue(t, s, mk("low-1", 10), mk("high-1", 1), mk("mid-1", 5), mk("high-2", 1), mk("low-2", 10))
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"q"}, Window: 1})
	var order []string
	for range 5 {
		j := w.next(5 * time.Second)
		order = append(order, j.GetJob().GetName())
		w.ack(j, nil)
	}
	if got, want := strings.Join(order, ","), "high-1,high-2,mid-1,low-1,low-2"; got != want {
		t.Fatalf("order = %s, want %s", got, want)
	}
}

func TestDelayedJobIsNotLeasedBeforeRunAt(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	sp := spec("q")
	sp.Delay = dur(600 * time.Millisecond)
	enqueued := time.Now()
	res := enqueue(t, s, sp)
	if res[0].GetState() != queuedv1.JobState_JOB_STATE_SCHEDULED {
		t.Fatalf("state = %v, want scheduled", res[0].GetState())
	}
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"q"}, Window: 1})
	w.expectNone(400 * time.Millisecond)
	w.next(5 * time.Second)
	if took := time.Since(enqueued); took < 600*time.Millisecond || took > 2*time.Second {
		t.Fatalf("delayed job started after %v, want shortly after 600ms", took)
	}
}

func TestUniqueKeyDeduplicatesWhileUnfinished(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	mk := func() *queuedv1.JobSpec {
		sp := spec("email")
		sp.UniqueKey = "welcome:42"
		return sp
	}
	first := enqueue(t, s, mk())[0]
	// Twice in one call and once more in another: all point at the first.
	again := enqueue(t, s, mk(), spec("email"), mk())
	if !again[0].GetDuplicate() || again[0].GetId() != first.GetId() || again[1].GetDuplicate() || !again[2].GetDuplicate() || again[2].GetId() != first.GetId() {
		t.Fatalf("second enqueue = %v, want duplicates of %d around one new job", again, first.GetId())
	}
	if got := countRows(t, s, "unique_key = 'welcome:42'"); got != 1 {
		t.Fatalf("rows with the key = %d, want 1", got)
	}
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"email"}, Window: 2})
	for range 2 {
		j := w.next(5 * time.Second)
		if _, err := s.Client.Ack(context.Background(), &queuedv1.AckRequest{JobId: j.GetJob().GetId(), LeaseToken: j.GetLeaseToken()}); err != nil {
			t.Fatalf("Ack() = %v", err)
		}
	}
	// Finished: the key is free again.
	third := enqueue(t, s, mk())[0]
	if third.GetDuplicate() || third.GetId() == first.GetId() {
		t.Fatalf("enqueue after completion = %v, want a new job", third)
	}
}

func TestCancelRunningJobTellsItsWorkerAndRefusesItsAck(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	id := enqueue(t, s, spec("q"))[0].GetId()
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"q"}, Window: 1})
	j := w.next(5 * time.Second)
	resp, err := s.Client.CancelJob(context.Background(), &queuedv1.CancelJobRequest{Id: id, Reason: "user deleted"})
	if err != nil {
		t.Fatalf("CancelJob() = %v", err)
	}
	if resp.GetJob().GetState() != queuedv1.JobState_JOB_STATE_CANCELLED {
		t.Fatalf("state = %v, want cancelled", resp.GetJob().GetState())
	}
	select {
	case m := <-w.events:
		if c := m.GetCancelled(); c == nil || c.GetJobId() != id || c.GetReason() != "user deleted" || c.GetKind() != queuedv1.JobCancelled_KIND_CANCELLED {
			t.Fatalf("event = %v, want the cancellation", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("worker was not told")
	}
	_, err = s.Client.Ack(context.Background(), &queuedv1.AckRequest{JobId: id, LeaseToken: j.GetLeaseToken()})
	wantCode(t, err, codes.FailedPrecondition)
	_, err = s.Client.CancelJob(context.Background(), &queuedv1.CancelJobRequest{Id: id})
	wantCode(t, err, codes.FailedPrecondition)
	_, err = s.Client.CancelJob(context.Background(), &queuedv1.CancelJobRequest{Id: 424242})
	wantCode(t, err, codes.NotFound)
}

func TestRetentionRemovesFinishedJobs(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t, queuedtest.WithService(func(c *service.Config) { c.Retention = 300 * time.Millisecond }))
	id := enqueue(t, s, spec("q"))[0].GetId()
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"q"}, Window: 1})
	w.ack(w.next(5*time.Second), []byte("r"))
	eventually(t, 5*time.Second, "completed", func() bool {
		return getJob(t, s, id).GetState() == queuedv1.JobState_JOB_STATE_COMPLETED
	})
	eventually(t, 5*time.Second, "job removed after retention", func() bool {
		_, err := s.Client.GetJob(context.Background(), &queuedv1.GetJobRequest{Id: id})
		return status.Code(err) == codes.NotFound
	})
}

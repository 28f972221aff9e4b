package grpcserver_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/internal/queuedtest"
)

// failJob leases the next job of queue and nacks it non-retryably. It
// closes the worker's window before the nack, on the same stream, so the
// freed slot leases nothing else and the queue's other jobs stay put.
func failJob(t *testing.T, s *queuedtest.Server, queue, msg string) *queuedv1.LeasedJob {
	t.Helper()
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{queue}, Window: 1})
	j := w.next(10 * time.Second)
	w.send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_SetWindow{SetWindow: &queuedv1.SetWindow{Window: 0}}})
	w.send(&queuedv1.LeaseRequest{Ref: 1, Msg: &queuedv1.LeaseRequest_Nack{Nack: &queuedv1.NackRequest{
		JobId: j.GetJob().GetId(), LeaseToken: j.GetLeaseToken(), Error: msg, NonRetryable: true}}})
	select {
	case ev := <-w.events:
		if r := ev.GetReply(); r.GetRef() != 1 || r.GetCode() != 0 || r.GetState() != queuedv1.JobState_JOB_STATE_FAILED {
			t.Fatalf("reply to the nack = %v, want OK and failed", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no reply to the nack")
	}
	w.cancel()
	return j
}

// listAll pages through a listing and returns every job id in order.
func listAll(t *testing.T, s *queuedtest.Server, req *queuedv1.ListJobsRequest) []int64 {
	t.Helper()
	var ids []int64
	for page := 0; ; page++ {
		resp, err := s.Admin.ListJobs(context.Background(), req)
		if err != nil {
			t.Fatalf("ListJobs(page %d) = %v", page, err)
		}
		for _, j := range resp.GetJobs() {
			ids = append(ids, j.GetId())
		}
		if resp.GetNextPageToken() == "" {
			return ids
		}
		if len(resp.GetJobs()) == 0 {
			t.Fatalf("page %d is empty but has a next page token", page)
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

func TestListJobsPagesAreStableWhileJobsAreInserted(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	var before []int64
	for range 5 {
		specs := make([]*queuedv1.JobSpec, 20)
		for i := range specs {
			specs[i] = spec("pages")
		}
		for _, e := range enqueue(t, s, specs...) {
			before = append(before, e.GetId())
		}
	}
	enqueue(t, s, spec("other")) // filtered out

	// Insert continuously while paging, in both orders.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			if _, err := s.Client.Enqueue(ctx, &queuedv1.EnqueueRequest{Jobs: []*queuedv1.JobSpec{spec("pages")}}); err != nil && ctx.Err() == nil {
				t.Errorf("concurrent Enqueue() = %v", err)
				return
			}
		}
	})
	newest := listAll(t, s, &queuedv1.ListJobsRequest{Queue: "pages", Limit: 7})
	oldest := listAll(t, s, &queuedv1.ListJobsRequest{Queue: "pages", Limit: 7, Order: queuedv1.ListJobsRequest_OLDEST_FIRST})
	stop()
	wg.Wait()

	for name, ids := range map[string][]int64{"newest first": newest, "oldest first": oldest} {
		seen := map[int64]bool{}
		for _, id := range ids {
			if seen[id] {
				t.Errorf("%s: job %d listed twice", name, id)
			}
			seen[id] = true
		}
		for _, id := range before {
			if !seen[id] {
				t.Errorf("%s: job %d, there before paging began, was never listed", name, id)
			}
		}
	}
	if !slices.IsSortedFunc(newest, func(a, b int64) int { return int(b - a) }) {
		t.Errorf("newest first is not in descending id order: %v", newest)
	}
	if !slices.IsSorted(oldest) {
		t.Errorf("oldest first is not in ascending id order: %v", oldest)
	}
	// Newest first starts at the newest job when paging began: jobs
	// inserted later are not part of that listing, and none is lost.
	if got, want := newest[len(newest)-1], before[0]; got != want {
		t.Errorf("newest first ends at job %d, want the first job %d", got, want)
	}
}

func TestListJobsFiltersByStateAndNameAndLeavesPayloadOut(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	enqueue(t, s, &queuedv1.JobSpec{Queue: "f", Name: "a", Payload: []byte("secret")},
		&queuedv1.JobSpec{Queue: "f", Name: "b", Payload: []byte("x")})
	failed := failJob(t, s, "f", "boom")

	resp, err := s.Admin.ListJobs(context.Background(), &queuedv1.ListJobsRequest{Queue: "f", States: []queuedv1.JobState{queuedv1.JobState_JOB_STATE_FAILED}})
	if err != nil {
		t.Fatalf("ListJobs(failed) = %v", err)
	}
	if len(resp.GetJobs()) != 1 || resp.GetJobs()[0].GetId() != failed.GetJob().GetId() {
		t.Fatalf("ListJobs(failed) = %v, want job %d only", resp.GetJobs(), failed.GetJob().GetId())
	}
	if got := resp.GetJobs()[0].GetErrors(); len(got) != 1 || got[0].GetMessage() != "boom" {
		t.Errorf("listed errors = %v, want [boom]", got)
	}
	if resp.GetNextPageToken() != "" {
		t.Errorf("next page token = %q on the only page", resp.GetNextPageToken())
	}

	resp, err = s.Admin.ListJobs(context.Background(), &queuedv1.ListJobsRequest{Name: "a"})
	if err != nil {
		t.Fatalf("ListJobs(name a) = %v", err)
	}
	if len(resp.GetJobs()) != 1 || resp.GetJobs()[0].GetName() != "a" || len(resp.GetJobs()[0].GetPayload()) != 0 {
		t.Fatalf("ListJobs(name a) = %v, want job a without payload", resp.GetJobs())
	}
	resp, err = s.Admin.ListJobs(context.Background(), &queuedv1.ListJobsRequest{Name: "a", IncludePayload: true})
	if err != nil {
		t.Fatalf("ListJobs(name a, payload) = %v", err)
	}
	if got := string(resp.GetJobs()[0].GetPayload()); got != "secret" {
		t.Errorf("payload with include_payload = %q, want %q", got, "secret")
	}

	// Two states at once, across queues.
	resp, err = s.Admin.ListJobs(context.Background(), &queuedv1.ListJobsRequest{States: []queuedv1.JobState{
		queuedv1.JobState_JOB_STATE_FAILED, queuedv1.JobState_JOB_STATE_AVAILABLE}})
	if err != nil {
		t.Fatalf("ListJobs(failed, available) = %v", err)
	}
	if got := len(resp.GetJobs()); got != 2 {
		t.Errorf("ListJobs(failed, available) = %d jobs, want 2", got)
	}
}

func TestRetryJobResetsAttemptsKeepsErrorsAndRunsAgain(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	ctx := context.Background()
	sp := spec("retry")
	sp.MaxAttempts = 3
	id := enqueue(t, s, sp)[0].GetId()
	failJob(t, s, "retry", "first failure")

	resp, err := s.Admin.RetryJob(ctx, &queuedv1.RetryJobRequest{Id: id})
	if err != nil {
		t.Fatalf("RetryJob() = %v", err)
	}
	j := resp.GetJob()
	if j.GetState() != queuedv1.JobState_JOB_STATE_AVAILABLE || j.GetAttempt() != 0 || j.GetMaxAttempts() != 3 || j.GetFinishedAt() != nil {
		t.Fatalf("retried job = state %v attempt %d/%d finished %v, want available 0/3 unfinished",
			j.GetState(), j.GetAttempt(), j.GetMaxAttempts(), j.GetFinishedAt())
	}
	if len(j.GetErrors()) != 1 || j.GetErrors()[0].GetMessage() != "first failure" {
		t.Errorf("errors after retry = %v, want the first failure kept", j.GetErrors())
	}

	// A worker gets it again, as attempt 1, and can complete it.
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"retry"}, Window: 1})
	lj := w.next(10 * time.Second)
	if lj.GetJob().GetId() != id || lj.GetJob().GetAttempt() != 1 {
		t.Fatalf("leased job %d attempt %d, want job %d attempt 1", lj.GetJob().GetId(), lj.GetJob().GetAttempt(), id)
	}
	if _, err := s.Client.Ack(ctx, &queuedv1.AckRequest{JobId: id, LeaseToken: lj.GetLeaseToken()}); err != nil {
		t.Fatalf("Ack() = %v", err)
	}
	if got := getJob(t, s, id).GetState(); got != queuedv1.JobState_JOB_STATE_COMPLETED {
		t.Fatalf("state after ack = %v, want completed", got)
	}

	// A completed job is not retried; the refusal names its state.
	_, err = s.Admin.RetryJob(ctx, &queuedv1.RetryJobRequest{Id: id})
	wantCode(t, err, codes.FailedPrecondition)
	if !strings.Contains(status.Convert(err).Message(), "completed") {
		t.Errorf("refusal %q does not name the state", status.Convert(err).Message())
	}

	// A cancelled job is retried too.
	id2 := enqueue(t, s, spec("retry2"))[0].GetId()
	if _, err := s.Client.CancelJob(ctx, &queuedv1.CancelJobRequest{Id: id2}); err != nil {
		t.Fatalf("CancelJob() = %v", err)
	}
	if resp, err := s.Admin.RetryJob(ctx, &queuedv1.RetryJobRequest{Id: id2}); err != nil || resp.GetJob().GetState() != queuedv1.JobState_JOB_STATE_AVAILABLE {
		t.Fatalf("RetryJob(cancelled) = %v, %v; want available", resp.GetJob().GetState(), err)
	}
	// An available job is refused, naming its state.
	_, err = s.Admin.RetryJob(ctx, &queuedv1.RetryJobRequest{Id: id2})
	wantCode(t, err, codes.FailedPrecondition)
	if !strings.Contains(status.Convert(err).Message(), "available") {
		t.Errorf("refusal %q does not name the state", status.Convert(err).Message())
	}
	_, err = s.Admin.RetryJob(ctx, &queuedv1.RetryJobRequest{Id: 999999})
	wantCode(t, err, codes.NotFound)
}

func TestRetryJobRefusesWhenTheUniqueKeyIsTaken(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	sp := spec("uk")
	sp.UniqueKey = "only-one"
	id := enqueue(t, s, sp)[0].GetId()
	failJob(t, s, "uk", "x")
	enqueue(t, s, sp) // the key is free again once the first failed
	_, err := s.Admin.RetryJob(context.Background(), &queuedv1.RetryJobRequest{Id: id})
	wantCode(t, err, codes.AlreadyExists)
	if got := getJob(t, s, id).GetState(); got != queuedv1.JobState_JOB_STATE_FAILED {
		t.Errorf("state after refused retry = %v, want failed", got)
	}
}

func TestRetryJobRefusesAFlowChild(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	_, err := s.Flows.EnqueueFlow(context.Background(), &queuedv1.EnqueueFlowRequest{Root: &queuedv1.FlowNode{
		Job:      spec("parent"),
		Children: []*queuedv1.FlowNode{{Job: spec("child")}},
	}})
	if err != nil {
		t.Fatalf("EnqueueFlow() = %v", err)
	}
	child := failJob(t, s, "child", "child broke")
	_, err = s.Admin.RetryJob(context.Background(), &queuedv1.RetryJobRequest{Id: child.GetJob().GetId()})
	wantCode(t, err, codes.FailedPrecondition)
	if !strings.Contains(status.Convert(err).Message(), "flow") {
		t.Errorf("refusal %q does not say why", status.Convert(err).Message())
	}
}

func TestDeleteJobDeletesOnlyFinishedJobs(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	ctx := context.Background()
	ids := enqueue(t, s, spec("del"), spec("del"))
	live, done := ids[0].GetId(), ids[1].GetId()
	if _, err := s.Client.CancelJob(ctx, &queuedv1.CancelJobRequest{Id: done}); err != nil {
		t.Fatalf("CancelJob() = %v", err)
	}

	_, err := s.Admin.DeleteJob(ctx, &queuedv1.DeleteJobRequest{Id: live})
	wantCode(t, err, codes.FailedPrecondition)
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "available") || !strings.Contains(msg, "cancel it first") {
		t.Errorf("refusal %q should name the state and say to cancel first", msg)
	}
	if n := countRows(t, s, fmt.Sprintf("id = %d", live)); n != 1 {
		t.Fatalf("refused delete removed the job")
	}

	resp, err := s.Admin.DeleteJob(ctx, &queuedv1.DeleteJobRequest{Id: done})
	if err != nil {
		t.Fatalf("DeleteJob(cancelled) = %v", err)
	}
	if resp.GetState() != queuedv1.JobState_JOB_STATE_CANCELLED {
		t.Errorf("deleted state = %v, want cancelled", resp.GetState())
	}
	if n := countRows(t, s, fmt.Sprintf("id = %d", done)); n != 0 {
		t.Fatalf("job still there after delete")
	}
	_, err = s.Admin.DeleteJob(ctx, &queuedv1.DeleteJobRequest{Id: done})
	wantCode(t, err, codes.NotFound)
}

func TestListQueuesCountsByState(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	ctx := context.Background()
	enqueue(t, s, spec("a"), spec("a"), spec("a"), spec("b"))
	failJob(t, s, "a", "x")
	id := enqueue(t, s, spec("c"))[0].GetId()
	if _, err := s.Client.CancelJob(ctx, &queuedv1.CancelJobRequest{Id: id}); err != nil {
		t.Fatalf("CancelJob() = %v", err)
	}
	resp, err := s.Admin.ListQueues(ctx, &queuedv1.ListQueuesRequest{})
	if err != nil {
		t.Fatalf("ListQueues() = %v", err)
	}
	got := map[string]string{}
	var names []string
	for _, q := range resp.GetQueues() {
		names = append(names, q.GetQueue())
		got[q.GetQueue()] = fmt.Sprintf("available=%d failed=%d cancelled=%d lag=%v", q.GetAvailable(), q.GetFailed(), q.GetCancelled(), q.GetOldestAvailableAt() != nil)
	}
	want := map[string]string{
		"a": "available=2 failed=1 cancelled=0 lag=true",
		"b": "available=1 failed=0 cancelled=0 lag=true",
		"c": "available=0 failed=0 cancelled=1 lag=false",
	}
	if !slices.Equal(names, []string{"a", "b", "c"}) {
		t.Errorf("queues = %v, want [a b c]", names)
	}
	for q, w := range want {
		if got[q] != w {
			t.Errorf("queue %s: %s, want %s", q, got[q], w)
		}
	}
	if resp.GetFinishedCountCap() <= 0 || resp.GetNow() == nil {
		t.Errorf("cap = %d, now = %v; want both set", resp.GetFinishedCountCap(), resp.GetNow())
	}
}

func TestAdminBadInputNamesTheField(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	ctx := context.Background()
	// A token made for one filter.
	enqueue(t, s, spec("tok"), spec("tok"))
	first, err := s.Admin.ListJobs(ctx, &queuedv1.ListJobsRequest{Queue: "tok", Limit: 1})
	if err != nil || first.GetNextPageToken() == "" {
		t.Fatalf("ListJobs() = %v, %v; want a next page", first, err)
	}
	tests := []struct {
		name  string
		call  func() error
		field string
	}{
		{"limit too big", func() error {
			_, err := s.Admin.ListJobs(ctx, &queuedv1.ListJobsRequest{Limit: 501})
			return err
		}, "limit"},
		{"negative limit", func() error {
			_, err := s.Admin.ListJobs(ctx, &queuedv1.ListJobsRequest{Limit: -1})
			return err
		}, "limit"},
		{"unknown state", func() error {
			_, err := s.Admin.ListJobs(ctx, &queuedv1.ListJobsRequest{States: []queuedv1.JobState{queuedv1.JobState_JOB_STATE_FAILED, 42}})
			return err
		}, "states[1]"},
		{"unknown order", func() error {
			_, err := s.Admin.ListJobs(ctx, &queuedv1.ListJobsRequest{Order: 9})
			return err
		}, "order"},
		{"long queue", func() error {
			_, err := s.Admin.ListJobs(ctx, &queuedv1.ListJobsRequest{Queue: strings.Repeat("q", 129)})
			return err
		}, "queue"},
		{"garbage token", func() error {
			_, err := s.Admin.ListJobs(ctx, &queuedv1.ListJobsRequest{PageToken: "%%%"})
			return err
		}, "page_token"},
		{"token for another filter", func() error {
			_, err := s.Admin.ListJobs(ctx, &queuedv1.ListJobsRequest{Queue: "other", PageToken: first.GetNextPageToken()})
			return err
		}, "page_token"},
		{"token for another order", func() error {
			_, err := s.Admin.ListJobs(ctx, &queuedv1.ListJobsRequest{Queue: "tok", Order: queuedv1.ListJobsRequest_OLDEST_FIRST, PageToken: first.GetNextPageToken()})
			return err
		}, "page_token"},
		{"retry id zero", func() error {
			_, err := s.Admin.RetryJob(ctx, &queuedv1.RetryJobRequest{})
			return err
		}, "id"},
		{"delete negative id", func() error {
			_, err := s.Admin.DeleteJob(ctx, &queuedv1.DeleteJobRequest{Id: -3})
			return err
		}, "id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			wantCode(t, err, codes.InvalidArgument)
			if got := fieldOf(t, err); got != tt.field {
				t.Errorf("field = %q, want %q", got, tt.field)
			}
		})
	}
}

package grpcserver_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/internal/queuedtest"
)

func TestAckContinuationsExistOnlyIfTheAckCommits(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	ctx := context.Background()
	enqueue(t, s, spec("first"), spec("first"))
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"first"}, Window: 2})
	a, b := w.next(5*time.Second), w.next(5*time.Second)
	then := []*queuedv1.FlowNode{
		{Job: &queuedv1.JobSpec{Queue: "next", Name: "send_receipt"}},
		rootNode("next", "report", node("next", "part1"), node("next", "part2")),
	}

	// A lost lease: nothing is inserted.
	_, err := s.Client.Ack(ctx, &queuedv1.AckRequest{JobId: a.GetJob().GetId(), LeaseToken: b.GetLeaseToken(), Then: then})
	wantCode(t, err, codes.FailedPrecondition)
	if n := countRows(t, s, "queue = 'next'"); n != 0 {
		t.Fatalf("%d continuation jobs exist after a refused ack", n)
	}

	// The continuation insert fails: the ack is rolled back with it.
	if _, err := s.Pool().Exec(ctx, `
		CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'injected failure'; END $$;
		CREATE TRIGGER refuse_boom BEFORE INSERT ON queued_jobs
			FOR EACH ROW WHEN (NEW.name = 'boom') EXECUTE FUNCTION refuse_boom();`); err != nil {
		t.Fatalf("install failing trigger: %v", err)
	}
	boom := append(then[:2:2], &queuedv1.FlowNode{Job: &queuedv1.JobSpec{Queue: "next", Name: "boom"}})
	_, err = s.Client.Ack(ctx, &queuedv1.AckRequest{JobId: a.GetJob().GetId(), LeaseToken: a.GetLeaseToken(), Result: []byte("x"), Then: boom})
	wantCode(t, err, codes.Internal)
	if n := countRows(t, s, "queue = 'next'"); n != 0 {
		t.Fatalf("%d continuation jobs exist after a failed ack", n)
	}
	wantState(t, s, a.GetJob().GetId(), queuedv1.JobState_JOB_STATE_RUNNING)

	// The same ack without the failing job commits all of it, on the stream
	// as well as unary.
	resp, err := s.Client.Ack(ctx, &queuedv1.AckRequest{JobId: a.GetJob().GetId(), LeaseToken: a.GetLeaseToken(), Result: []byte("x"), Then: then})
	if err != nil {
		t.Fatalf("Ack() with continuations = %v", err)
	}
	if len(resp.GetThenIds()) != 2 {
		t.Fatalf("then ids = %v, want 2", resp.GetThenIds())
	}
	wantState(t, s, a.GetJob().GetId(), queuedv1.JobState_JOB_STATE_COMPLETED)
	wantState(t, s, resp.GetThenIds()[0], queuedv1.JobState_JOB_STATE_AVAILABLE)
	flow, err := s.Flows.GetFlow(ctx, &queuedv1.GetFlowRequest{Id: resp.GetThenIds()[1]})
	if err != nil || len(flow.GetRoot().GetChildren()) != 2 || flow.GetRoot().GetJob().GetState() != queuedv1.JobState_JOB_STATE_WAITING_CHILDREN {
		t.Fatalf("GetFlow(continuation) = %v, %v; want a waiting root with 2 children", flow, err)
	}
	w.send(&queuedv1.LeaseRequest{Ref: 9, Msg: &queuedv1.LeaseRequest_Ack{Ack: &queuedv1.AckRequest{
		JobId: b.GetJob().GetId(), LeaseToken: b.GetLeaseToken(), Then: []*queuedv1.FlowNode{{Job: &queuedv1.JobSpec{Queue: "next", Name: "from_stream"}}},
	}}})
	select {
	case m := <-w.events:
		if r := m.GetReply(); r.GetRef() != 9 || r.GetCode() != 0 {
			t.Fatalf("reply = %v, want ok", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reply to the stream ack")
	}
	if n := countRows(t, s, "queue = 'next'"); n != 5 {
		t.Fatalf("%d continuation jobs, want 5", n)
	}
	nw := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"next"}, Window: 10})
	for range 4 { // the root of the report waits for its parts
		nw.next(5 * time.Second)
	}
	nw.expectNone(200 * time.Millisecond)
}

// TestChildCompletionAndParentReleaseAreOneTransaction makes the parent's
// release fail and shows that the child's completion is undone with it, so
// no crash can leave a completed last child under a waiting parent.
func TestChildCompletionAndParentReleaseAreOneTransaction(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	ctx := context.Background()
	ids := flowIDs(enqueueFlow(t, s, node("p", "root", node("c", "only"))).GetRoot())
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"c"}, Window: 1})
	child := w.next(5 * time.Second)

	if _, err := s.Pool().Exec(ctx, `
		CREATE FUNCTION refuse_release() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'injected crash while releasing the parent'; END $$;
		CREATE TRIGGER refuse_release BEFORE UPDATE ON queued_jobs
			FOR EACH ROW WHEN (OLD.state = 'waiting_children' AND NEW.state <> 'waiting_children')
			EXECUTE FUNCTION refuse_release();`); err != nil {
		t.Fatalf("install failing trigger: %v", err)
	}
	_, err := s.Client.Ack(ctx, &queuedv1.AckRequest{JobId: child.GetJob().GetId(), LeaseToken: child.GetLeaseToken(), Result: []byte("r")})
	wantCode(t, err, codes.Internal)
	wantState(t, s, ids["only"], queuedv1.JobState_JOB_STATE_RUNNING)
	if p := wantState(t, s, ids["root"], queuedv1.JobState_JOB_STATE_WAITING_CHILDREN); p == nil {
		t.Fatal("unreachable")
	}
	// Same for a failure (nack) of the child.
	_, err = s.Client.Nack(ctx, &queuedv1.NackRequest{JobId: child.GetJob().GetId(), LeaseToken: child.GetLeaseToken(), Error: "x", NonRetryable: true})
	wantCode(t, err, codes.Internal)
	wantState(t, s, ids["only"], queuedv1.JobState_JOB_STATE_RUNNING)

	// Once the failure is gone, the same lease acks and the parent runs.
	if _, err := s.Pool().Exec(ctx, `DROP TRIGGER refuse_release ON queued_jobs`); err != nil {
		t.Fatal(err)
	}
	ackUnary(t, s, child, "r")
	p := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"p"}, Window: 1})
	if got := children(p.next(5 * time.Second))["only"]; string(got.GetResult()) != "r" {
		t.Fatalf("child as the parent sees it = %v", got)
	}
}

func TestFlowChildWithLostLeaseIsRetriedAndCountsOnce(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	ids := flowIDs(enqueueFlow(t, s, node("p", "root", node("c", "slowpoke"), node("c", "quick"))).GetRoot())
	short := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"c"}, Window: 1, LeaseDuration: dur(300 * time.Millisecond)})
	first := short.next(5 * time.Second)
	// The lease expires (the sweeper takes it back); the worker is told.
	eventually(t, 10*time.Second, "the lease to expire", func() bool {
		return getJob(t, s, first.GetJob().GetId()).GetState() != queuedv1.JobState_JOB_STATE_RUNNING
	})
	_, err := s.Client.Ack(context.Background(), &queuedv1.AckRequest{JobId: first.GetJob().GetId(), LeaseToken: first.GetLeaseToken()})
	wantCode(t, err, codes.FailedPrecondition)
	short.cancel()

	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"c"}, Window: 2})
	got := map[int64]*queuedv1.LeasedJob{}
	for range 2 {
		j := w.next(5 * time.Second)
		got[j.GetJob().GetId()] = j
	}
	retried := got[first.GetJob().GetId()]
	if retried == nil || retried.GetJob().GetAttempt() != 2 {
		t.Fatalf("retried job = %v, want attempt 2 of job %d", retried, first.GetJob().GetId())
	}
	for _, j := range got {
		ackUnary(t, s, j, "ok")
	}
	p := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"p"}, Window: 2})
	root := p.next(5 * time.Second)
	if root.GetJob().GetId() != ids["root"] || len(root.GetChildren()) != 2 {
		t.Fatalf("root lease = %v", root)
	}
	p.expectNone(300 * time.Millisecond)
	if n := countRows(t, s, fmt.Sprintf("id = %d AND pending_children = 0", ids["root"])); n != 1 {
		t.Fatal("root's pending children are not exactly 0")
	}
}

func TestFlowChildFailingByLeaseExpiryOrLostWorkerFailsParent(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"lease expiry", "worker went away"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			s := queuedtest.Start(t)
			last := node("c", "last")
			last.Job.MaxAttempts = 1
			ids := flowIDs(enqueueFlow(t, s, node("p", "root", last, node("other", "sibling"))).GetRoot())
			open := &queuedv1.LeaseOpen{Queues: []string{"c"}, Window: 1}
			if how == "lease expiry" {
				open.LeaseDuration = dur(200 * time.Millisecond)
			}
			w := openWorker(t, s.Client, open)
			w.next(5 * time.Second)
			if how == "worker went away" {
				w.cancel()
			}
			eventually(t, 10*time.Second, "the parent to fail", func() bool {
				return getJob(t, s, ids["root"]).GetState() == queuedv1.JobState_JOB_STATE_FAILED
			})
			wantState(t, s, ids["last"], queuedv1.JobState_JOB_STATE_FAILED)
			wantState(t, s, ids["sibling"], queuedv1.JobState_JOB_STATE_CANCELLED)
		})
	}
}

func TestFlowChildrenDeadline(t *testing.T) {
	t.Parallel()
	tests := []struct {
		policy    queuedv1.ChildFailurePolicy
		wantState queuedv1.JobState
	}{
		{queuedv1.ChildFailurePolicy_CHILD_FAILURE_POLICY_FAIL_PARENT, queuedv1.JobState_JOB_STATE_FAILED},
		{queuedv1.ChildFailurePolicy_CHILD_FAILURE_POLICY_IGNORE, queuedv1.JobState_JOB_STATE_AVAILABLE},
		{queuedv1.ChildFailurePolicy_CHILD_FAILURE_POLICY_CONTINUE, queuedv1.JobState_JOB_STATE_AVAILABLE},
	}
	for _, tt := range tests {
		t.Run(tt.policy.String(), func(t *testing.T) {
			t.Parallel()
			s := queuedtest.Start(t)
			root := rootNode("p", "root", node("c", "done"), withPolicy(node("stuck", "stuck"), tt.policy))
			root.ChildrenTimeout = dur(500 * time.Millisecond)
			ids := flowIDs(enqueueFlow(t, s, root).GetRoot())
			w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"c", "stuck"}, Window: 2})
			jobs := map[string]*queuedv1.LeasedJob{}
			for range 2 {
				j := w.next(5 * time.Second)
				jobs[j.GetJob().GetName()] = j
			}
			ackUnary(t, s, jobs["done"], "ok")
			eventually(t, 10*time.Second, "the deadline to end the wait", func() bool {
				return getJob(t, s, ids["root"]).GetState() != queuedv1.JobState_JOB_STATE_WAITING_CHILDREN
			})
			wantState(t, s, ids["root"], tt.wantState)
			stuck := wantState(t, s, ids["stuck"], queuedv1.JobState_JOB_STATE_CANCELLED)
			if errs := stuck.GetErrors(); len(errs) == 0 || errs[len(errs)-1].GetMessage() != "the parent's deadline for its children passed" {
				t.Fatalf("stuck child's errors = %v", errs)
			}
			_, err := s.Client.Ack(context.Background(), &queuedv1.AckRequest{JobId: ids["stuck"], LeaseToken: jobs["stuck"].GetLeaseToken()})
			wantCode(t, err, codes.FailedPrecondition)
		})
	}
}

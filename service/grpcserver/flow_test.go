package grpcserver_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/internal/queuedtest"
)

// node is a flow node whose job and child name are both name.
func node(queue, name string, children ...*queuedv1.FlowNode) *queuedv1.FlowNode {
	return &queuedv1.FlowNode{Job: &queuedv1.JobSpec{Queue: queue, Name: name, Payload: []byte(name)}, ChildName: name, Children: children}
}

// rootNode is node without a child name, as a root must be.
func rootNode(queue, name string, children ...*queuedv1.FlowNode) *queuedv1.FlowNode {
	n := node(queue, name, children...)
	n.ChildName = ""
	return n
}

func withPolicy(n *queuedv1.FlowNode, p queuedv1.ChildFailurePolicy) *queuedv1.FlowNode {
	n.OnFailure = p
	return n
}

func enqueueFlow(t testing.TB, s *queuedtest.Server, root *queuedv1.FlowNode) *queuedv1.EnqueueFlowResponse {
	t.Helper()
	root.ChildName = ""
	resp, err := s.Flows.EnqueueFlow(context.Background(), &queuedv1.EnqueueFlowRequest{Root: root})
	if err != nil {
		t.Fatalf("EnqueueFlow() = %v", err)
	}
	return resp
}

// flowIDs maps child names (and "root") to job ids.
func flowIDs(root *queuedv1.FlowJob) map[string]int64 {
	out := map[string]int64{"root": root.GetJob().GetId()}
	var walk func(*queuedv1.FlowJob)
	walk = func(f *queuedv1.FlowJob) {
		for _, c := range f.GetChildren() {
			out[c.GetChildName()] = c.GetJob().GetId()
			walk(c)
		}
	}
	walk(root)
	return out
}

func ackUnary(t testing.TB, s *queuedtest.Server, j *queuedv1.LeasedJob, result string) {
	t.Helper()
	if _, err := s.Client.Ack(context.Background(), &queuedv1.AckRequest{JobId: j.GetJob().GetId(), LeaseToken: j.GetLeaseToken(), Result: []byte(result)}); err != nil {
		t.Fatalf("Ack(job %d) = %v", j.GetJob().GetId(), err)
	}
}

func nackFatal(t testing.TB, s *queuedtest.Server, j *queuedv1.LeasedJob, msg string) {
	t.Helper()
	if _, err := s.Client.Nack(context.Background(), &queuedv1.NackRequest{JobId: j.GetJob().GetId(), LeaseToken: j.GetLeaseToken(), Error: msg, NonRetryable: true}); err != nil {
		t.Fatalf("Nack(job %d) = %v", j.GetJob().GetId(), err)
	}
}

func children(j *queuedv1.LeasedJob) map[string]*queuedv1.ChildOutcome {
	out := make(map[string]*queuedv1.ChildOutcome)
	for _, c := range j.GetChildren() {
		out[c.GetChildName()] = c
	}
	return out
}

func wantState(t testing.TB, s *queuedtest.Server, id int64, want queuedv1.JobState) *queuedv1.Job {
	t.Helper()
	j := getJob(t, s, id)
	if j.GetState() != want {
		t.Fatalf("job %d state = %v, want %v (errors %v)", id, j.GetState(), want, j.GetErrors())
	}
	return j
}

func TestFlowThreeLevelsRunBottomUpWithResultsDelivered(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	// root (queue a) <- mid (queue b) <- leaf1, leaf2 (queue c)
	//                <- side (queue c)
	resp := enqueueFlow(t, s, node("a", "root",
		node("b", "mid", node("c", "leaf1"), node("c", "leaf2")),
		node("c", "side")))
	ids := flowIDs(resp.GetRoot())
	if resp.GetFlowId() != ids["root"] {
		t.Fatalf("flow id = %d, want the root's id %d", resp.GetFlowId(), ids["root"])
	}
	if got := resp.GetRoot().GetJob().GetState(); got != queuedv1.JobState_JOB_STATE_WAITING_CHILDREN {
		t.Fatalf("root state = %v, want waiting_children", got)
	}

	a := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"a"}, Window: 10})
	b := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"b"}, Window: 10})
	c := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"c"}, Window: 10})

	leaves := map[string]*queuedv1.LeasedJob{}
	for range 3 {
		j := c.next(5 * time.Second)
		leaves[j.GetJob().GetName()] = j
	}
	b.expectNone(200 * time.Millisecond)
	a.expectNone(0)

	ackUnary(t, s, leaves["leaf1"], "r-leaf1")
	ackUnary(t, s, leaves["side"], "r-side")
	b.expectNone(200 * time.Millisecond) // leaf2 is still running
	ackUnary(t, s, leaves["leaf2"], "r-leaf2")

	mid := b.next(5 * time.Second)
	if mid.GetJob().GetId() != ids["mid"] {
		t.Fatalf("queue b leased job %d, want mid %d", mid.GetJob().GetId(), ids["mid"])
	}
	got := children(mid)
	if len(got) != 2 || string(got["leaf1"].GetResult()) != "r-leaf1" || string(got["leaf2"].GetResult()) != "r-leaf2" ||
		got["leaf1"].GetJobId() != ids["leaf1"] || got["leaf1"].GetState() != queuedv1.JobState_JOB_STATE_COMPLETED {
		t.Fatalf("mid's children = %v, want leaf1 and leaf2 completed with results", mid.GetChildren())
	}
	a.expectNone(200 * time.Millisecond)
	ackUnary(t, s, mid, "r-mid")

	root := a.next(5 * time.Second)
	got = children(root)
	if root.GetJob().GetId() != ids["root"] || len(got) != 2 || string(got["mid"].GetResult()) != "r-mid" || string(got["side"].GetResult()) != "r-side" {
		t.Fatalf("root lease = %v, want the root with mid's and side's results", root)
	}
	if root.GetJob().GetAttempt() != 1 {
		t.Fatalf("root attempt = %d, want 1", root.GetJob().GetAttempt())
	}
	ackUnary(t, s, root, "r-root")

	flow, err := s.Flows.GetFlow(context.Background(), &queuedv1.GetFlowRequest{Id: ids["leaf2"]})
	if err != nil {
		t.Fatalf("GetFlow() = %v", err)
	}
	if flow.GetFlowId() != ids["root"] || len(flow.GetRoot().GetChildren()) != 2 || len(flow.GetRoot().GetChildren()[0].GetChildren()) != 2 {
		t.Fatalf("GetFlow() = %v, want the whole tree", flow)
	}
	for name, id := range flowIDs(flow.GetRoot()) {
		if id != ids[name] {
			t.Fatalf("GetFlow() node %q = job %d, want %d", name, id, ids[name])
		}
		wantState(t, s, id, queuedv1.JobState_JOB_STATE_COMPLETED)
	}
}

func TestFlowFailParentFailsParentAndCancelsSiblingsAndTheirSubtrees(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	resp := enqueueFlow(t, s, node("p", "root",
		node("bad", "bad"),
		node("slow", "slow"),
		node("q", "nested", node("deep", "deep")),
	))
	ids := flowIDs(resp.GetRoot())
	bad := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"bad"}, Window: 1})
	slow := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"slow"}, Window: 1})
	parent := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"p", "q"}, Window: 10})
	running := slow.next(5 * time.Second)
	nackFatal(t, s, bad.next(5*time.Second), "disk full")

	root := wantState(t, s, ids["root"], queuedv1.JobState_JOB_STATE_FAILED)
	if errs := root.GetErrors(); len(errs) != 1 || errs[0].GetMessage() != fmt.Sprintf(`child "bad" (job %d) failed: disk full`, ids["bad"]) {
		t.Fatalf("root errors = %v, want the child's error", errs)
	}
	for _, name := range []string{"slow", "nested", "deep"} {
		wantState(t, s, ids[name], queuedv1.JobState_JOB_STATE_CANCELLED)
	}
	// The worker running a cancelled sibling is told, and its ack is refused.
	select {
	case m := <-slow.events:
		if m.GetCancelled().GetJobId() != ids["slow"] {
			t.Fatalf("event = %v, want the cancellation of slow", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the worker running a cancelled sibling was not told")
	}
	_, err := s.Client.Ack(context.Background(), &queuedv1.AckRequest{JobId: running.GetJob().GetId(), LeaseToken: running.GetLeaseToken()})
	wantCode(t, err, codes.FailedPrecondition)
	parent.expectNone(300 * time.Millisecond)
	if n := countRows(t, s, fmt.Sprintf("flow_id = %d AND pending_children <> 0", ids["root"])); n != 0 {
		t.Fatalf("%d jobs of the flow still count pending children", n)
	}
}

func TestFlowIgnorePolicyParentRunsAndSeesTheFailure(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	resp := enqueueFlow(t, s, node("p", "root",
		withPolicy(node("c", "flaky"), queuedv1.ChildFailurePolicy_CHILD_FAILURE_POLICY_IGNORE),
		node("c", "good")))
	ids := flowIDs(resp.GetRoot())
	c := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"c"}, Window: 2})
	p := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"p"}, Window: 1})
	jobs := map[string]*queuedv1.LeasedJob{}
	for range 2 {
		j := c.next(5 * time.Second)
		jobs[j.GetJob().GetName()] = j
	}
	nackFatal(t, s, jobs["flaky"], "timeout talking to the API")
	p.expectNone(300 * time.Millisecond) // good is still running
	wantState(t, s, ids["root"], queuedv1.JobState_JOB_STATE_WAITING_CHILDREN)
	ackUnary(t, s, jobs["good"], "fine")

	root := p.next(5 * time.Second)
	got := children(root)
	if got["flaky"].GetState() != queuedv1.JobState_JOB_STATE_FAILED || got["flaky"].GetError() != "timeout talking to the API" ||
		got["flaky"].GetOnFailure() != queuedv1.ChildFailurePolicy_CHILD_FAILURE_POLICY_IGNORE {
		t.Fatalf("flaky as the parent sees it = %v, want failed with its error", got["flaky"])
	}
	if string(got["good"].GetResult()) != "fine" {
		t.Fatalf("good as the parent sees it = %v, want its result", got["good"])
	}
}

func TestFlowContinuePolicyReleasesParentAtOnceOthersGoOn(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	resp := enqueueFlow(t, s, node("p", "root",
		withPolicy(node("fast", "optional"), queuedv1.ChildFailurePolicy_CHILD_FAILURE_POLICY_CONTINUE),
		node("slow", "long")))
	ids := flowIDs(resp.GetRoot())
	fast := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"fast"}, Window: 1})
	slow := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"slow"}, Window: 1})
	p := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"p"}, Window: 1})
	long := slow.next(5 * time.Second)
	nackFatal(t, s, fast.next(5*time.Second), "not today")

	root := p.next(5 * time.Second)
	got := children(root)
	if got["optional"].GetState() != queuedv1.JobState_JOB_STATE_FAILED || got["optional"].GetError() != "not today" {
		t.Fatalf("optional as the parent sees it = %v, want failed", got["optional"])
	}
	if got["long"].GetState() != queuedv1.JobState_JOB_STATE_RUNNING {
		t.Fatalf("long as the parent sees it = %v, want still running", got["long"])
	}
	ackUnary(t, s, root, "done early")
	// The other child goes on and finishes normally.
	ackUnary(t, s, long, "late")
	wantState(t, s, ids["long"], queuedv1.JobState_JOB_STATE_COMPLETED)
	if j := wantState(t, s, ids["root"], queuedv1.JobState_JOB_STATE_COMPLETED); string(j.GetResult()) != "done early" {
		t.Fatalf("root result = %q", j.GetResult())
	}
	p.expectNone(300 * time.Millisecond)
}

func TestFlowCancelParentCascadesToUnfinishedSubtree(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	resp := enqueueFlow(t, s, node("p", "root",
		node("m", "mid", node("leaf", "running"), node("leaf", "done")),
		node("leaf", "other")))
	ids := flowIDs(resp.GetRoot())
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"leaf"}, Window: 3})
	jobs := map[string]*queuedv1.LeasedJob{}
	for range 3 {
		j := w.next(5 * time.Second)
		jobs[j.GetJob().GetName()] = j
	}
	ackUnary(t, s, jobs["done"], "ok")

	if _, err := s.Client.CancelJob(context.Background(), &queuedv1.CancelJobRequest{Id: ids["root"], Reason: "user gave up"}); err != nil {
		t.Fatalf("CancelJob() = %v", err)
	}
	wantState(t, s, ids["root"], queuedv1.JobState_JOB_STATE_CANCELLED)
	wantState(t, s, ids["done"], queuedv1.JobState_JOB_STATE_COMPLETED) // finished work stays finished
	for _, name := range []string{"mid", "running", "other"} {
		wantState(t, s, ids[name], queuedv1.JobState_JOB_STATE_CANCELLED)
	}
	cancelled := map[int64]bool{}
	eventually(t, 10*time.Second, "the worker to be told of both cancellations", func() bool {
		select {
		case m := <-w.events:
			if c := m.GetCancelled(); c != nil {
				cancelled[c.GetJobId()] = true
			}
		default:
		}
		return cancelled[ids["running"]] && cancelled[ids["other"]]
	})
	_, err := s.Client.Ack(context.Background(), &queuedv1.AckRequest{JobId: ids["running"], LeaseToken: jobs["running"].GetLeaseToken()})
	wantCode(t, err, codes.FailedPrecondition)
	// Cancelling it again is refused: it is finished.
	_, err = s.Client.CancelJob(context.Background(), &queuedv1.CancelJobRequest{Id: ids["root"]})
	wantCode(t, err, codes.FailedPrecondition)
}

func TestFlowCancelledChildActsByItsPolicy(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	resp := enqueueFlow(t, s, node("p", "root", node("c", "a"), node("c", "b")))
	ids := flowIDs(resp.GetRoot())
	if _, err := s.Client.CancelJob(context.Background(), &queuedv1.CancelJobRequest{Id: ids["a"], Reason: "not needed"}); err != nil {
		t.Fatalf("CancelJob() = %v", err)
	}
	root := wantState(t, s, ids["root"], queuedv1.JobState_JOB_STATE_FAILED)
	if want := fmt.Sprintf(`child "a" (job %d) cancelled: not needed`, ids["a"]); root.GetErrors()[0].GetMessage() != want {
		t.Fatalf("root error = %q, want %q", root.GetErrors()[0].GetMessage(), want)
	}
	wantState(t, s, ids["b"], queuedv1.JobState_JOB_STATE_CANCELLED)
}

func TestFlowThousandChildrenCompletingConcurrentlyReleaseParentOnce(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	ctx := context.Background()
	// Record every state change of flow parents, to count releases.
	if _, err := s.Pool().Exec(ctx, `
		CREATE TABLE parent_transitions (job_id bigint, old_state text, new_state text);
		CREATE FUNCTION log_parent_transition() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO parent_transitions VALUES (NEW.id, OLD.state, NEW.state);
			RETURN NEW;
		END $$;
		CREATE TRIGGER parent_transitions AFTER UPDATE OF state ON queued_jobs
			FOR EACH ROW WHEN (OLD.child_count > 0 AND OLD.state IS DISTINCT FROM NEW.state)
			EXECUTE FUNCTION log_parent_transition();`); err != nil {
		t.Fatalf("install transition log: %v", err)
	}
	const n = 1000
	root := node("parent", "root")
	for i := range n {
		root.Children = append(root.Children, node("kids", fmt.Sprintf("kid-%d", i)))
	}
	ids := flowIDs(enqueueFlow(t, s, root).GetRoot())

	var leased []*queuedv1.LeasedJob
	for range 4 {
		w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"kids"}, Window: n / 4})
		for range n / 4 {
			leased = append(leased, w.next(10*time.Second))
		}
	}
	// Ack all of them at once from many goroutines: the acks coalesce into
	// concurrent multi-row statements that race for the parent row.
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for _, j := range leased {
		wg.Go(func() {
			<-start
			_, err := s.Client.Ack(ctx, &queuedv1.AckRequest{JobId: j.GetJob().GetId(), LeaseToken: j.GetLeaseToken(), Result: []byte(j.GetJob().GetName())})
			if err != nil {
				errs <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Ack() = %v", err)
	}

	p := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"parent"}, Window: 5})
	parent := p.next(10 * time.Second)
	if parent.GetJob().GetId() != ids["root"] || parent.GetJob().GetAttempt() != 1 || len(parent.GetChildren()) != n {
		t.Fatalf("parent lease = job %d attempt %d with %d children, want job %d attempt 1 with %d", parent.GetJob().GetId(), parent.GetJob().GetAttempt(), len(parent.GetChildren()), ids["root"], n)
	}
	for _, c := range parent.GetChildren() {
		if string(c.GetResult()) != c.GetChildName() {
			t.Fatalf("child %q result = %q", c.GetChildName(), c.GetResult())
		}
	}
	p.expectNone(300 * time.Millisecond)
	var releases, pending int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM parent_transitions WHERE job_id = $1 AND old_state = 'waiting_children'`, ids["root"]).Scan(&releases); err != nil {
		t.Fatal(err)
	}
	if err := s.Pool().QueryRow(ctx, `SELECT pending_children FROM queued_jobs WHERE id = $1`, ids["root"]).Scan(&pending); err != nil {
		t.Fatal(err)
	}
	if releases != 1 || pending != 0 {
		t.Fatalf("parent left waiting_children %d times with %d pending children, want once with 0", releases, pending)
	}
}

func TestEnqueueFlowValidation(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	tests := []struct {
		name  string
		root  *queuedv1.FlowNode
		field string
	}{
		{"missing root", nil, "root"},
		{"duplicate child names", rootNode("p", "r", node("c", "x"), node("c", "x")), "root.children[1].child_name"},
		{"named root", &queuedv1.FlowNode{Job: spec("p"), ChildName: "me"}, "root.child_name"},
		{"unique key in a flow", rootNode("p", "r", &queuedv1.FlowNode{Job: &queuedv1.JobSpec{Queue: "c", Name: "x", UniqueKey: "k"}}), "root.children[0].job.unique_key"},
		{"missing child queue", rootNode("p", "r", node("", "x")), "root.children[0].job.queue"},
		{"deadline on a leaf", &queuedv1.FlowNode{Job: spec("p"), ChildrenTimeout: dur(time.Second)}, "root.children_timeout"},
		{"unknown policy", rootNode("p", "r", withPolicy(node("c", "x"), 42)), "root.children[0].on_failure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Flows.EnqueueFlow(context.Background(), &queuedv1.EnqueueFlowRequest{Root: tt.root})
			wantCode(t, err, codes.InvalidArgument)
			if got := violatedField(err); got != tt.field {
				t.Fatalf("violated field = %q, want %q (%v)", got, tt.field, err)
			}
		})
	}
	if n := countRows(t, s, "true"); n != 0 {
		t.Fatalf("%d jobs inserted by refused flows", n)
	}
	_, err := s.Flows.GetFlow(context.Background(), &queuedv1.GetFlowRequest{Id: enqueue(t, s, spec("plain"))[0].GetId()})
	wantCode(t, err, codes.NotFound)
}

func violatedField(err error) string {
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	return ""
}

package queued

import (
	"context"
	"fmt"
	"time"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
)

// ChildPolicy says what a child that fails (or is cancelled) does to its
// parent while the parent waits for its children. See docs/flows.md.
type ChildPolicy string

// Child policies.
const (
	// FailParent (the default) fails the parent at once with the child's
	// error and cancels the parent's unfinished children.
	FailParent ChildPolicy = "fail_parent"
	// IgnoreFailure lets the parent run when all children are finished; it
	// sees the failure in Job.Children.
	IgnoreFailure ChildPolicy = "ignore"
	// ContinueOnFailure runs the parent as soon as this child fails; the
	// other children go on.
	ContinueOnFailure ChildPolicy = "continue"
)

var policyToProto = map[ChildPolicy]queuedv1.ChildFailurePolicy{
	"":                queuedv1.ChildFailurePolicy_CHILD_FAILURE_POLICY_UNSPECIFIED,
	FailParent:        queuedv1.ChildFailurePolicy_CHILD_FAILURE_POLICY_FAIL_PARENT,
	IgnoreFailure:     queuedv1.ChildFailurePolicy_CHILD_FAILURE_POLICY_IGNORE,
	ContinueOnFailure: queuedv1.ChildFailurePolicy_CHILD_FAILURE_POLICY_CONTINUE,
}

func policyFromProto(p queuedv1.ChildFailurePolicy) ChildPolicy {
	for k, v := range policyToProto {
		if v == p && k != "" {
			return k
		}
	}
	return ""
}

// FlowNode is a job of a flow to enqueue, with the children it waits for.
// Build trees with NewFlow and Child:
//
//	flow := queued.NewFlow(queued.NewSpec("reports", "assemble", nil)).
//		Child("sales", queued.NewFlow(queued.NewSpec("etl", "extract", []byte("sales")))).
//		Child("stock", queued.NewFlow(queued.NewSpec("etl", "extract", []byte("stock"))), queued.IgnoreFailure)
type FlowNode struct {
	Spec JobSpec
	// Name of this node among its siblings; its parent sees its result
	// under this name. Set by Child.
	Name string
	// OnFailure is this node's policy toward its parent; set by Child.
	OnFailure ChildPolicy
	// ChildrenTimeout bounds how long this job waits for its children.
	ChildrenTimeout time.Duration
	Children        []*FlowNode
}

// NewFlow starts a flow node for spec.
func NewFlow(spec JobSpec) *FlowNode { return &FlowNode{Spec: spec} }

// Child adds child under n with a name unique among n's children and an
// optional policy (FailParent when omitted), and returns n for chaining.
func (n *FlowNode) Child(name string, child *FlowNode, policy ...ChildPolicy) *FlowNode {
	child.Name = name
	if len(policy) > 0 {
		child.OnFailure = policy[0]
	}
	n.Children = append(n.Children, child)
	return n
}

// WaitAtMost sets how long n waits for its children (from enqueue) and
// returns n. When it passes, unfinished children are cancelled and their
// policies decide: FailParent fails n, the others let it run.
func (n *FlowNode) WaitAtMost(d time.Duration) *FlowNode {
	n.ChildrenTimeout = d
	return n
}

func (n *FlowNode) toProto() *queuedv1.FlowNode {
	out := &queuedv1.FlowNode{
		Job:             n.Spec.toProto(),
		ChildName:       n.Name,
		OnFailure:       policyToProto[n.OnFailure],
		ChildrenTimeout: durationOrNil(n.ChildrenTimeout),
	}
	for _, c := range n.Children {
		out.Children = append(out.Children, c.toProto())
	}
	return out
}

// Flow is a flow as the server stores it.
type Flow struct {
	ID   int64    `json:"id"` // the root's id
	Root *FlowJob `json:"root"`
}

// FlowJob is one job of a stored flow with its children.
type FlowJob struct {
	Job              *Job        `json:"job"`
	Name             string      `json:"child_name,omitempty"`
	OnFailure        ChildPolicy `json:"on_failure,omitempty"`
	PendingChildren  int32       `json:"pending_children"`
	ChildrenDeadline time.Time   `json:"children_deadline"`
	Children         []*FlowJob  `json:"children,omitempty"`
}

func flowJobFromProto(p *queuedv1.FlowJob) *FlowJob {
	out := &FlowJob{
		Job:              jobFromProto(p.GetJob()),
		Name:             p.GetChildName(),
		OnFailure:        policyFromProto(p.GetOnFailure()),
		PendingChildren:  p.GetPendingChildren(),
		ChildrenDeadline: timeOf(p.GetChildrenDeadline()),
	}
	for _, c := range p.GetChildren() {
		out.Children = append(out.Children, flowJobFromProto(c))
	}
	return out
}

// EnqueueFlow inserts a whole tree in one transaction: leaves are ready at
// once, each parent runs after its children with their results in
// Job.Children. The root must have no Name or OnFailure.
func (c *Client) EnqueueFlow(ctx context.Context, root *FlowNode) (*Flow, error) {
	resp, err := c.flows.EnqueueFlow(ctx, &queuedv1.EnqueueFlowRequest{Root: root.toProto()})
	if err != nil {
		return nil, fmt.Errorf("enqueue flow: %w", err)
	}
	return &Flow{ID: resp.GetFlowId(), Root: flowJobFromProto(resp.GetRoot())}, nil
}

// GetFlow returns the flow that job id belongs to, with every job's state.
func (c *Client) GetFlow(ctx context.Context, id int64) (*Flow, error) {
	resp, err := c.flows.GetFlow(ctx, &queuedv1.GetFlowRequest{Id: id})
	if err != nil {
		return nil, fmt.Errorf("get flow of job %d: %w", id, err)
	}
	return &Flow{ID: resp.GetFlowId(), Root: flowJobFromProto(resp.GetRoot())}, nil
}

// ChildResult is a child of a flow parent as the parent's handler sees it.
type ChildResult struct {
	JobID     int64       `json:"job_id"`
	Name      string      `json:"name"`
	State     State       `json:"state"`
	Result    []byte      `json:"result,omitempty"`
	Error     string      `json:"error,omitempty"` // for failed and cancelled children
	OnFailure ChildPolicy `json:"on_failure,omitempty"`
}

func childrenFromProto(cs []*queuedv1.ChildOutcome) []ChildResult {
	if len(cs) == 0 {
		return nil
	}
	out := make([]ChildResult, len(cs))
	for i, c := range cs {
		out[i] = ChildResult{JobID: c.GetJobId(), Name: c.GetChildName(), State: toState(c.GetState()),
			Result: c.GetResult(), Error: c.GetError(), OnFailure: policyFromProto(c.GetOnFailure())}
	}
	return out
}

// Child returns the child called name of a flow parent.
func (j *Job) Child(name string) (ChildResult, bool) {
	for _, c := range j.Children {
		if c.Name == name {
			return c, true
		}
	}
	return ChildResult{}, false
}

// Then adds continuations to a job a handler is working: jobs or flows
// (roots without Name) that the server enqueues in the same transaction as
// the job's ack. If the handler fails, or the ack is refused, none of them
// is enqueued. Call it from the job's handler before it returns.
func (j *Job) Then(nodes ...*FlowNode) {
	j.then = append(j.then, nodes...)
}

func (j *Job) thenProto() []*queuedv1.FlowNode {
	if len(j.then) == 0 {
		return nil
	}
	out := make([]*queuedv1.FlowNode, len(j.then))
	for i, n := range j.then {
		out[i] = n.toProto()
	}
	return out
}

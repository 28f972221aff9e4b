package grpcserver

import (
	"context"
	"fmt"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/service"
)

// FlowServer implements queued.v1.FlowService. It is a type of its own
// because the generated bases of two services cannot both be embedded in
// Server; Register installs both.
type FlowServer struct {
	queuedv1.UnimplementedFlowServiceServer
	srv *Server
}

var _ queuedv1.FlowServiceServer = (*FlowServer)(nil)

// EnqueueFlow inserts a tree of jobs in one transaction.
func (f *FlowServer) EnqueueFlow(ctx context.Context, req *queuedv1.EnqueueFlowRequest) (*queuedv1.EnqueueFlowResponse, error) {
	spec, err := flowSpecFromProto(req.GetRoot(), "root", 1)
	if err != nil {
		return nil, f.srv.toStatus(ctx, err)
	}
	tree, err := f.srv.svc.EnqueueFlow(ctx, spec)
	if err != nil {
		return nil, f.srv.toStatus(ctx, err)
	}
	return &queuedv1.EnqueueFlowResponse{FlowId: tree.Job.ID, Root: flowTreeToProto(tree)}, nil
}

// GetFlow returns the flow a job belongs to.
func (f *FlowServer) GetFlow(ctx context.Context, req *queuedv1.GetFlowRequest) (*queuedv1.GetFlowResponse, error) {
	tree, err := f.srv.svc.GetFlow(ctx, req.GetId())
	if err != nil {
		return nil, f.srv.toStatus(ctx, err)
	}
	return &queuedv1.GetFlowResponse{FlowId: tree.Job.ID, Root: flowTreeToProto(tree)}, nil
}

// ack completes a job, with its continuations when it has any.
func (s *Server) ack(ctx context.Context, acker interface {
	AckThen(context.Context, service.LeaseRef, []byte, []service.FlowSpec) ([]int64, error)
}, req *queuedv1.AckRequest, field string) ([]int64, error) {
	then, err := continuationsFromProto(req.GetThen(), field)
	if err != nil {
		return nil, err
	}
	return acker.AckThen(ctx, leaseRef(req.GetJobId(), req.GetLeaseToken()), req.GetResult(), then)
}

func continuationsFromProto(nodes []*queuedv1.FlowNode, field string) ([]service.FlowSpec, error) {
	if len(nodes) == 0 {
		return nil, nil
	}
	out := make([]service.FlowSpec, len(nodes))
	for i, n := range nodes {
		spec, err := flowSpecFromProto(n, fmt.Sprintf("%s[%d]", field, i), 1)
		if err != nil {
			return nil, err
		}
		out[i] = spec
	}
	return out, nil
}

var policyFromProto = map[queuedv1.ChildFailurePolicy]service.ChildPolicy{
	queuedv1.ChildFailurePolicy_CHILD_FAILURE_POLICY_UNSPECIFIED: "",
	queuedv1.ChildFailurePolicy_CHILD_FAILURE_POLICY_FAIL_PARENT: service.ChildFailParent,
	queuedv1.ChildFailurePolicy_CHILD_FAILURE_POLICY_IGNORE:      service.ChildIgnore,
	queuedv1.ChildFailurePolicy_CHILD_FAILURE_POLICY_CONTINUE:    service.ChildContinue,
}

var policyToProto = map[service.ChildPolicy]queuedv1.ChildFailurePolicy{
	service.ChildFailParent: queuedv1.ChildFailurePolicy_CHILD_FAILURE_POLICY_FAIL_PARENT,
	service.ChildIgnore:     queuedv1.ChildFailurePolicy_CHILD_FAILURE_POLICY_IGNORE,
	service.ChildContinue:   queuedv1.ChildFailurePolicy_CHILD_FAILURE_POLICY_CONTINUE,
}

func flowSpecFromProto(n *queuedv1.FlowNode, field string, depth int) (service.FlowSpec, error) {
	if n == nil {
		return service.FlowSpec{}, &service.ValidationError{Field: field, Reason: "must be set"}
	}
	if depth > service.MaxFlowDepth {
		return service.FlowSpec{}, &service.ValidationError{Field: field, Reason: fmt.Sprintf("a flow may be at most %d levels deep", service.MaxFlowDepth)}
	}
	job, err := jobSpecFromProto(n.GetJob(), field+".job")
	if err != nil {
		return service.FlowSpec{}, err
	}
	policy, ok := policyFromProto[n.GetOnFailure()]
	if !ok {
		return service.FlowSpec{}, &service.ValidationError{Field: field + ".on_failure", Reason: fmt.Sprintf("unknown value %d", n.GetOnFailure())}
	}
	timeout, err := durationFromProto(n.GetChildrenTimeout(), field+".children_timeout")
	if err != nil {
		return service.FlowSpec{}, err
	}
	spec := service.FlowSpec{Job: job, ChildName: n.GetChildName(), OnFailure: policy, ChildrenTimeout: timeout}
	for i, c := range n.GetChildren() {
		child, err := flowSpecFromProto(c, fmt.Sprintf("%s.children[%d]", field, i), depth+1)
		if err != nil {
			return service.FlowSpec{}, err
		}
		spec.Children = append(spec.Children, child)
	}
	return spec, nil
}

func flowTreeToProto(t *service.FlowTree) *queuedv1.FlowJob {
	l := t.Job.Flow
	out := &queuedv1.FlowJob{
		Job:              jobToProto(t.Job),
		ChildName:        l.ChildName,
		OnFailure:        policyToProto[l.Policy],
		PendingChildren:  l.PendingChildren,
		ChildrenDeadline: timestamp(l.ChildrenDeadline),
		ParentId:         l.ParentID,
	}
	for _, c := range t.Children {
		out.Children = append(out.Children, flowTreeToProto(c))
	}
	return out
}

func childrenToProto(children []service.ChildOutcome) []*queuedv1.ChildOutcome {
	if len(children) == 0 {
		return nil
	}
	out := make([]*queuedv1.ChildOutcome, len(children))
	for i, c := range children {
		out[i] = &queuedv1.ChildOutcome{
			JobId: c.JobID, ChildName: c.Name, State: stateToProto[c.State],
			Result: c.Result, Error: c.Error, OnFailure: policyToProto[c.Policy],
		}
	}
	return out
}

package service

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ChildPolicy says what a child that fails, or is cancelled, does to its
// parent while the parent waits for its children. Once the parent stopped
// waiting (it was released, failed or cancelled), a child's outcome only
// counts it as finished.
type ChildPolicy string

// Child failure policies. The string values are what the store persists.
const (
	// ChildFailParent fails the parent at once with the child's error and
	// cancels the parent's unfinished children. It is the default, because a
	// parent that waits forever for a child that will never succeed (BullMQ's
	// default) is the worse surprise.
	ChildFailParent ChildPolicy = "fail_parent"
	// ChildIgnore lets the parent run once all its children are finished;
	// the parent sees the failure among its children's outcomes.
	ChildIgnore ChildPolicy = "ignore"
	// ChildContinue releases the parent as soon as this child fails; its
	// other children go on running.
	ChildContinue ChildPolicy = "continue"
)

// MaxFlowDepth bounds the depth of a flow tree (the root is depth 1).
const MaxFlowDepth = 32

// FlowLink is a job's place in a flow. It is zero for a job outside flows.
type FlowLink struct {
	FlowID           int64 // the root's id; the root's own id for the root
	ParentID         int64 // 0 for the root
	ChildName        string
	Policy           ChildPolicy // empty for the root
	ChildCount       int32       // direct children
	PendingChildren  int32       // direct children not finished yet
	ChildrenDeadline time.Time   // zero: wait for ever
}

// ChildOutcome is a child of a flow parent as the parent sees it when it is
// leased.
type ChildOutcome struct {
	JobID  int64
	Name   string
	State  JobState
	Result []byte
	Error  string // the last error, for a failed or cancelled child
	Policy ChildPolicy
}

// FlowSpec is a flow to enqueue: a job and the jobs it waits for.
type FlowSpec struct {
	Job JobSpec
	// ChildName names this child among its siblings; empty means its index.
	ChildName string
	// OnFailure is this child's policy; empty means ChildFailParent.
	OnFailure ChildPolicy
	// ChildrenTimeout, when positive, is how long this job waits for its
	// children from enqueue before its unfinished children are cancelled.
	ChildrenTimeout time.Duration
	Children        []FlowSpec
}

// NewFlowJob is one resolved row of a flow. A flow is a slice of them in
// pre-order, so every parent comes before its children.
type NewFlowJob struct {
	NewJob
	Parent           int // index of the parent in the slice; -1 for the root
	ChildName        string
	Policy           ChildPolicy
	ChildCount       int32
	ChildrenDeadline time.Time
}

// FlowTree is a flow as stored: a job and its children.
type FlowTree struct {
	Job      Job
	Children []*FlowTree
}

// EnqueueFlow validates a tree and inserts it in one transaction. It
// returns the tree as inserted.
func (s *Service) EnqueueFlow(ctx context.Context, spec FlowSpec) (*FlowTree, error) {
	rows, err := s.resolveFlows([]FlowSpec{spec}, "root")
	if err != nil {
		return nil, err
	}
	out, err := s.store.InsertFlows(ctx, rows)
	if err != nil {
		return nil, err
	}
	s.afterInsertFlows(rows)
	return buildFlowTree(out[0], out[0][0].ID)
}

// GetFlow returns the flow that job id belongs to. A job outside any flow
// is ErrNotFound.
func (s *Service) GetFlow(ctx context.Context, id int64) (*FlowTree, error) {
	if id <= 0 {
		return nil, invalid("id", "must be positive")
	}
	jobs, err := s.store.GetFlow(ctx, id)
	if err != nil {
		return nil, err
	}
	return buildFlowTree(jobs, jobs[0].Flow.FlowID)
}

// AckThen completes a leased job and enqueues the continuations then (jobs
// or whole flows) in the same transaction: either the job is completed and
// every continuation exists, or nothing changed. It returns the ids of the
// continuations' roots. Unlike Ack it is not coalesced with other acks.
func (s *Service) AckThen(ctx context.Context, ref LeaseRef, result []byte, then []FlowSpec) ([]int64, error) {
	if len(then) == 0 {
		return nil, s.Ack(ctx, ref, result)
	}
	if err := validRef(ref); err != nil {
		return nil, err
	}
	if len(result) > s.cfg.MaxPayloadBytes {
		return nil, &TooLargeError{Field: "result", Size: len(result), Limit: s.cfg.MaxPayloadBytes}
	}
	rows, err := s.resolveFlows(then, "then")
	if err != nil {
		return nil, err
	}
	ids, err := s.store.CompleteThen(ctx, Completion{LeaseRef: ref, Result: result}, rows, s.now())
	if err == nil || errors.Is(err, ErrLeaseLost) {
		s.settled(ref.JobID)
	}
	if err != nil {
		return nil, err
	}
	s.afterInsertFlows(rows)
	return ids, nil
}

// resolveFlows validates flows and flattens each into pre-order rows.
// field names the request field of the first flow ("root", or "then" for
// which an index is added).
func (s *Service) resolveFlows(specs []FlowSpec, field string) ([][]NewFlowJob, error) {
	now := s.now()
	total := 0
	out := make([][]NewFlowJob, len(specs))
	for i, spec := range specs {
		f := field
		if len(specs) > 1 || field == "then" {
			f = fmt.Sprintf("%s[%d]", field, i)
		}
		if spec.ChildName != "" {
			return nil, invalid(f+".child_name", "must be empty on a root")
		}
		if spec.OnFailure != "" {
			return nil, invalid(f+".on_failure", "must be unset on a root")
		}
		var rows []NewFlowJob
		if err := s.flattenFlow(spec, -1, 1, now, f, &rows, &total); err != nil {
			return nil, err
		}
		out[i] = rows
	}
	return out, nil
}

func (s *Service) flattenFlow(spec FlowSpec, parent, depth int, now time.Time, field string, rows *[]NewFlowJob, total *int) error {
	if depth > MaxFlowDepth {
		return invalid(field, "a flow may be at most %d levels deep", MaxFlowDepth)
	}
	*total++
	if *total > s.cfg.WriteBatchMax {
		return invalid(field, "a request may hold at most %d jobs", s.cfg.WriteBatchMax)
	}
	job, err := s.resolve(spec.Job, now, field+".job.")
	if err != nil {
		return err
	}
	if job.UniqueKey != "" {
		return invalid(field+".job.unique_key", "unique keys are not supported in flows")
	}
	if spec.ChildrenTimeout < 0 {
		return invalid(field+".children_timeout", "must not be negative")
	}
	row := NewFlowJob{NewJob: job, Parent: parent, ChildName: spec.ChildName, Policy: spec.OnFailure, ChildCount: int32(len(spec.Children))}
	if parent >= 0 && row.Policy == "" {
		row.Policy = ChildFailParent
	}
	switch row.Policy {
	case "", ChildFailParent, ChildIgnore, ChildContinue:
	default:
		return invalid(field+".on_failure", "unknown policy %q", row.Policy)
	}
	if len(spec.Children) > 0 {
		row.State = StateWaitingChildren
		if spec.ChildrenTimeout > 0 {
			row.ChildrenDeadline = now.Add(spec.ChildrenTimeout)
		}
	} else if spec.ChildrenTimeout > 0 {
		return invalid(field+".children_timeout", "only a job with children may set it")
	}
	self := len(*rows)
	*rows = append(*rows, row)
	names := make(map[string]bool, len(spec.Children))
	for i, c := range spec.Children {
		f := fmt.Sprintf("%s.children[%d]", field, i)
		if c.ChildName == "" {
			c.ChildName = strconv.Itoa(i)
		}
		if len(c.ChildName) > MaxNameLength {
			return invalid(f+".child_name", "must be at most %d bytes", MaxNameLength)
		}
		if names[c.ChildName] {
			return invalid(f+".child_name", "%q names another child of the same parent", c.ChildName)
		}
		names[c.ChildName] = true
		if err := s.flattenFlow(c, self, depth+1, now, f, rows, total); err != nil {
			return err
		}
	}
	return nil
}

// afterInsertFlows wakes local dispatchers for the leaves that are ready.
func (s *Service) afterInsertFlows(flows [][]NewFlowJob) {
	var rows []NewJob
	for _, f := range flows {
		for _, r := range f {
			if r.State != StateWaitingChildren {
				rows = append(rows, r.NewJob)
			}
		}
	}
	s.afterInsert(rows)
}

// buildFlowTree links jobs into the tree under rootID. Jobs whose parent
// retention already removed are left out.
func buildFlowTree(jobs []Job, rootID int64) (*FlowTree, error) {
	nodes := make(map[int64]*FlowTree, len(jobs))
	for _, j := range jobs {
		nodes[j.ID] = &FlowTree{Job: j}
	}
	root, ok := nodes[rootID]
	if !ok {
		return nil, fmt.Errorf("flow %d: its root was removed: %w", rootID, ErrNotFound)
	}
	for _, j := range jobs { // jobs come in id order, so children stay in enqueue order
		if p, ok := nodes[j.Flow.ParentID]; ok && j.ID != rootID {
			p.Children = append(p.Children, nodes[j.ID])
		}
	}
	return root, nil
}

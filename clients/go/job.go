package queued

import (
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
)

// State is where a job is in its life. The values are lower-case words so
// they read well in logs and JSON.
type State string

// Job states, as the server reports them.
const (
	StateUnknown         State = "unknown"
	StateScheduled       State = "scheduled"        // waiting for run_at (a delay or a retry backoff)
	StateAvailable       State = "available"        // ready to be leased
	StateRunning         State = "running"          // leased by a worker
	StateWaitingChildren State = "waiting_children" // a flow parent waiting for its children
	StateCompleted       State = "completed"        // acked; terminal
	StateFailed          State = "failed"           // out of attempts or non-retryable; terminal
	StateCancelled       State = "cancelled"        // cancelled; terminal
)

// Finished reports whether the state is terminal.
func (s State) Finished() bool {
	return s == StateCompleted || s == StateFailed || s == StateCancelled
}

var stateFromProto = map[queuedv1.JobState]State{
	queuedv1.JobState_JOB_STATE_SCHEDULED:        StateScheduled,
	queuedv1.JobState_JOB_STATE_AVAILABLE:        StateAvailable,
	queuedv1.JobState_JOB_STATE_RUNNING:          StateRunning,
	queuedv1.JobState_JOB_STATE_WAITING_CHILDREN: StateWaitingChildren,
	queuedv1.JobState_JOB_STATE_COMPLETED:        StateCompleted,
	queuedv1.JobState_JOB_STATE_FAILED:           StateFailed,
	queuedv1.JobState_JOB_STATE_CANCELLED:        StateCancelled,
}

func toState(s queuedv1.JobState) State {
	if st, ok := stateFromProto[s]; ok {
		return st
	}
	return StateUnknown
}

// AttemptError is the error one attempt ended with.
type AttemptError struct {
	Attempt int32     `json:"attempt"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// Job is a job as the server stores it. Workers receive it in their handler
// with a lease attached, which Progress uses; jobs returned by GetJob carry
// no lease.
type Job struct {
	ID          int64             `json:"id"`
	Queue       string            `json:"queue"`
	Name        string            `json:"name"`
	Payload     []byte            `json:"payload"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Priority    int32             `json:"priority"`
	State       State             `json:"state"`
	Attempt     int32             `json:"attempt"` // attempts started so far, including a running one
	MaxAttempts int32             `json:"max_attempts"`
	Backoff     BackoffPolicy     `json:"backoff"`
	UniqueKey   string            `json:"unique_key,omitempty"`
	RunAt       time.Time         `json:"run_at"`
	CreatedAt   time.Time         `json:"created_at"`
	StartedAt   time.Time         `json:"started_at"`
	FinishedAt  time.Time         `json:"finished_at"`
	Result      []byte            `json:"result,omitempty"`
	Errors      []AttemptError    `json:"errors,omitempty"`
	// LastProgress is the latest progress report (Job.Progress stores it).
	LastProgress   []byte    `json:"progress,omitempty"`
	LeasedBy       string    `json:"leased_by,omitempty"`
	LeaseExpiresAt time.Time `json:"lease_expires_at"`

	// Children are a flow parent's children with their results and
	// errors, as they were when the parent was leased.
	Children []ChildResult `json:"children,omitempty"`

	lease *activeJob  // set for jobs handed to a worker's handler
	then  []*FlowNode // continuations added by the handler (Then)
}

// DecodeJSON unmarshals the job's payload into v.
func (j *Job) DecodeJSON(v any) error {
	if err := json.Unmarshal(j.Payload, v); err != nil {
		return fmt.Errorf("decode payload of job %d (%s): %w", j.ID, j.Name, err)
	}
	return nil
}

func jobFromProto(p *queuedv1.Job) *Job {
	j := &Job{
		ID:             p.GetId(),
		Queue:          p.GetQueue(),
		Name:           p.GetName(),
		Payload:        p.GetPayload(),
		Metadata:       p.GetMetadata(),
		Priority:       p.GetPriority(),
		State:          toState(p.GetState()),
		Attempt:        p.GetAttempt(),
		MaxAttempts:    p.GetMaxAttempts(),
		Backoff:        backoffFromProto(p.GetBackoff()),
		UniqueKey:      p.GetUniqueKey(),
		RunAt:          timeOf(p.GetRunAt()),
		CreatedAt:      timeOf(p.GetCreatedAt()),
		StartedAt:      timeOf(p.GetStartedAt()),
		FinishedAt:     timeOf(p.GetFinishedAt()),
		Result:         p.GetResult(),
		LastProgress:   p.GetProgress(),
		LeasedBy:       p.GetLeasedBy(),
		LeaseExpiresAt: timeOf(p.GetLeaseExpiresAt()),
	}
	for _, e := range p.GetErrors() {
		j.Errors = append(j.Errors, AttemptError{Attempt: e.GetAttempt(), Message: e.GetMessage(), At: timeOf(e.GetAt())})
	}
	return j
}

// timeOf converts an optional timestamp; unset becomes the zero time.
func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

func durationOrNil(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

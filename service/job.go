// Package service is the domain core of queued: the job model, its state
// rules, retries and backoff, and the dispatcher that hands jobs to worker
// sessions. It knows nothing of gRPC or PostgreSQL; it declares the Store port
// it needs and the adapters (store, grpcserver) plug into it.
package service

import (
	"time"
)

// JobState is where a job is in its life. The string values are what the
// store persists.
type JobState string

// Job states. Scheduled and available jobs wait; running jobs are leased;
// completed, failed and cancelled are terminal.
const (
	StateScheduled       JobState = "scheduled"
	StateAvailable       JobState = "available"
	StateRunning         JobState = "running"
	StateWaitingChildren JobState = "waiting_children"
	StateCompleted       JobState = "completed"
	StateFailed          JobState = "failed"
	StateCancelled       JobState = "cancelled"
)

// Terminal reports whether a job in state s will never change again.
func (s JobState) Terminal() bool {
	return s == StateCompleted || s == StateFailed || s == StateCancelled
}

// Job is a job as stored.
type Job struct {
	ID             int64
	Queue          string
	Name           string
	Payload        []byte
	Metadata       map[string]string
	Priority       int32
	State          JobState
	Attempt        int32 // attempts started, including a running one
	MaxAttempts    int32
	Backoff        Backoff
	UniqueKey      string
	RunAt          time.Time
	CreatedAt      time.Time
	StartedAt      time.Time // start of the latest attempt; zero if never started
	FinishedAt     time.Time // zero until terminal
	Result         []byte
	Errors         []AttemptError
	Progress       []byte
	LeasedBy       string
	LeaseExpiresAt time.Time
	Flow           FlowLink // zero for a job outside any flow
}

// AttemptError is the error one attempt ended with.
type AttemptError struct {
	Attempt int32     `json:"attempt"`
	Message string    `json:"error"`
	At      time.Time `json:"at"`
}

// Lease is a job handed to a worker together with the token that fences its
// settlement.
type Lease struct {
	Job       Job
	Token     string
	ExpiresAt time.Time
	// Children are a flow parent's children as they were when it was
	// leased; nil for other jobs.
	Children []ChildOutcome
}

// JobSpec is a job to enqueue, after defaults have been applied and it has
// been validated (see Service.Enqueue).
type JobSpec struct {
	Queue       string
	Name        string
	Payload     []byte
	Metadata    map[string]string
	Priority    int32
	RunAt       time.Time // zero means now
	Delay       time.Duration
	MaxAttempts int32 // 0 means Config.DefaultMaxAttempts
	Backoff     Backoff
	UniqueKey   string
}

// EnqueuedJob is the outcome of enqueueing one JobSpec.
type EnqueuedJob struct {
	ID        int64
	Duplicate bool // an unfinished job with the same unique key existed; ID is that job's
	State     JobState
}

// NewJob is a fully resolved row for the store to insert.
type NewJob struct {
	Queue       string
	Name        string
	Payload     []byte
	Metadata    map[string]string
	Priority    int32
	RunAt       time.Time
	State       JobState // available or scheduled
	MaxAttempts int32
	Backoff     Backoff
	UniqueKey   string
	CreatedAt   time.Time
}

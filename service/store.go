package service

import (
	"context"
	"time"
)

// Store is the persistence port the service needs. The PostgreSQL adapter in
// package store implements it. Every method that makes a job available, or
// cancels a running one, also publishes a Notification in the same
// transaction so that dispatchers on every replica wake up.
type Store interface {
	ScheduleStore
	QueueStore
	AdminStore
	// InsertJobs inserts all jobs or none. Jobs with a unique key that
	// matches an unfinished job come back as duplicates naming that job.
	InsertJobs(ctx context.Context, jobs []NewJob) ([]EnqueuedJob, error)
	// ClaimJobs leases up to len(p.Owners) available jobs in (priority,
	// run_at, id) order, skipping rows locked by other claimers.
	ClaimJobs(ctx context.Context, p ClaimParams) ([]ClaimedJob, error)
	// CompleteJobs marks leased jobs completed. It returns, per input, nil
	// or ErrLeaseLost / ErrNotFound; the error return is for the batch.
	// A completed flow child counts as finished for its parent in the same
	// statement, releasing the parent when it was the last one.
	CompleteJobs(ctx context.Context, acks []Completion, now time.Time) ([]error, error)
	// FailAttempt ends the current attempt of a leased job with an error.
	// decide chooses the job's next state from the locked row.
	FailAttempt(ctx context.Context, p FailParams) (Job, error)
	// ExtendLease moves a lease's expiry.
	ExtendLease(ctx context.Context, ref LeaseRef, expiresAt time.Time) error
	// UpdateProgress stores a progress report on a leased job.
	UpdateProgress(ctx context.Context, ref LeaseRef, progress []byte) error
	// ReleaseJobs hands leased jobs back without counting the attempt.
	// Leases already gone are skipped; it returns the ids released.
	ReleaseJobs(ctx context.Context, refs []LeaseRef, now time.Time) ([]int64, error)
	// AbandonJobs ends the current attempt of leased jobs whose worker went
	// away: retried at once while attempts remain, failed otherwise.
	AbandonJobs(ctx context.Context, refs []LeaseRef, reason string, now time.Time) (int, error)
	// ExpireLeases does what AbandonJobs does for up to limit jobs whose
	// lease expired before now.
	ExpireLeases(ctx context.Context, now time.Time, limit int) (int, error)
	// PromoteScheduled makes up to limit scheduled jobs whose run_at has
	// come available, and returns the run_at of the next scheduled job.
	PromoteScheduled(ctx context.Context, now time.Time, limit int) (promoted int, next time.Time, err error)
	// DeleteFinished removes up to limit terminal jobs finished before
	// the cutoff.
	DeleteFinished(ctx context.Context, before time.Time, limit int) (int, error)
	// GetJob returns one job.
	GetJob(ctx context.Context, id int64) (Job, error)
	// CancelJob moves an unfinished job to cancelled and reports the state
	// it had. Its unfinished flow subtree is cancelled with it, and its
	// parent learns of it, in the same transaction. A running job's lease is voided and its cancellation is
	// published so the replica holding its stream tells the worker.
	CancelJob(ctx context.Context, id int64, reason string, now time.Time) (job Job, previous JobState, err error)
	// InsertFlows inserts flows (each in pre-order, see NewFlowJob) in one
	// transaction and returns each flow's jobs in the same order.
	InsertFlows(ctx context.Context, flows [][]NewFlowJob) ([][]Job, error)
	// CompleteThen acks one lease and inserts flows in one transaction,
	// returning the flows' root ids; on a lost lease nothing is inserted.
	CompleteThen(ctx context.Context, ack Completion, then [][]NewFlowJob, now time.Time) ([]int64, error)
	// GetFlow returns every job of the flow job id belongs to, in id order
	// (so parents before children). A job outside flows is ErrNotFound.
	GetFlow(ctx context.Context, id int64) ([]Job, error)
	// ExpireChildDeadlines ends the wait of up to limit parents whose
	// children deadline passed before now: their unfinished children are
	// cancelled, and each child's policy decides the parent's fate.
	ExpireChildDeadlines(ctx context.Context, now time.Time, limit int) (int, error)
	// Listen delivers notifications published by any replica until ctx
	// ends. It reconnects by itself and calls onReconnect after a gap, when
	// notifications may have been missed.
	Listen(ctx context.Context, onNotify func(Notification), onReconnect func()) error

	// ReadChanges returns, in (transaction, job id) order, up to q.Limit
	// job changes that q.After does not cover and that match q.Filter's
	// job ids, queue and names, with the snapshot they were read in. Every
	// insert, state change and progress change of a job is a change; a
	// job changed again before it is read shows only its latest change.
	ReadChanges(ctx context.Context, q ChangeQuery) (ChangeBatch, error)
	// CurrentJobs returns the jobs among ids that exist, as changes, and
	// the snapshot they were read in.
	CurrentJobs(ctx context.Context, ids []int64) ([]Change, Snapshot, error)
}

// ChangeQuery asks ReadChanges for the changes after a cursor.
type ChangeQuery struct {
	After  Cursor
	Filter WatchFilter // event kinds are not the store's business
	Limit  int
}

// ChangeBatch is what one ReadChanges call saw.
type ChangeBatch struct {
	Changes  []Change
	Snapshot Snapshot // the snapshot the changes were read in
	// Complete is true when the batch holds every change the snapshot
	// shows after the cursor (the limit was not reached).
	Complete bool
}

// Change is the latest row version of a job and the transaction that
// wrote it. The job comes without its payload.
type Change struct {
	XID       uint64
	PrevState JobState // state before the change; empty for an insert
	Job       Job
}

// NotificationKind says what a Notification announces.
type NotificationKind int

// Notification kinds.
const (
	// NotifyAvailable: jobs became available in Queue.
	NotifyAvailable NotificationKind = iota + 1
	// NotifyCancelled: the running job JobID was cancelled.
	NotifyCancelled
	// NotifyChanged: some job changed (inserted, state or progress); the
	// watch reader should look.
	NotifyChanged
	// NotifySchedules: a schedule was created, changed or deleted.
	NotifySchedules
	// NotifyQueue: the settings of Queue (paused, rate limit) changed.
	NotifyQueue
)

// Notification is a cross-replica signal published by the store.
type Notification struct {
	Kind   NotificationKind
	Queue  string
	JobID  int64
	Reason string
	// LeaseExpired marks a NotifyCancelled that revokes an expired lease
	// rather than a cancelled job.
	LeaseExpired bool
}

// ClaimParams asks for one job per owner slot. Owners[i] and ExpiresAt[i]
// are the leased_by and lease expiry the i-th claimed job gets; slots beyond
// the number of available jobs stay empty.
type ClaimParams struct {
	Queues    []string
	Owners    []string
	ExpiresAt []time.Time
	Now       time.Time
}

// ClaimedJob is a lease together with the owner slot it was claimed for.
type ClaimedJob struct {
	Slot  int // index into ClaimParams.Owners
	Lease Lease
}

// LeaseRef names a lease: a job and the token it was leased with.
type LeaseRef struct {
	JobID int64
	Token string
}

// Completion acks one lease with an optional result.
type Completion struct {
	LeaseRef
	Result []byte
}

// FailParams ends one attempt with an error.
type FailParams struct {
	LeaseRef
	Error string
	Now   time.Time
	// Decide returns the job's next state (scheduled, available or failed)
	// and run_at, given the locked job row.
	Decide func(Job) (JobState, time.Time)
}

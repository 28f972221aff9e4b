// Package store is the PostgreSQL adapter of queued. It implements
// service.Store over one job table (see migrations/0001_jobs.sql) with pgx.
//
// Every write that makes jobs available publishes a notification on
// channelAvailable in the same statement, so the notification is delivered
// if and only if the write commits.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/queued-dev/queued/service"
)

// Notification channels.
const (
	channelAvailable = "queued_available" // payload: queue name
	channelCancelled = "queued_cancelled" // payload: job id:kind:reason
	// channelChanges is raised by triggers (migrations/0002_watch.sql) in
	// every transaction that inserts a job or changes a job's state or
	// progress; watch readers look for the changes when it fires.
	channelChanges = "queued_changes"
)

// Kinds of revoked lease in a channelCancelled payload, so the worker
// learns whether its job was cancelled or taken back after its lease
// expired without parsing a reason meant for people.
const (
	kindCancelled    = "c"
	kindLeaseExpired = "e"
)

// Store implements service.Store on PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
}

var _ service.Store = (*Store)(nil)

// New returns a Store over pool. The schema must be migrated
// (migrations.Apply).
func New(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool}
}

// Pool is the underlying pool, for health checks.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// jobColumns lists the columns scanned into jobRow, in any query that
// returns whole jobs.
const jobColumns = `j.id, j.queue, j.name, j.payload, j.metadata, j.priority, j.state, j.attempt,
	j.max_attempts, j.backoff, j.unique_key, j.run_at, j.created_at, j.started_at, j.finished_at,
	j.lease_token::text AS lease_token, j.lease_expires_at, j.leased_by, j.result, j.progress, j.errors,
	j.parent_id, j.flow_id, j.child_name, j.child_policy, j.child_count, j.pending_children, j.children_deadline`

// jobRow is a row of queued_jobs as scanned; it never leaves this package.
type jobRow struct {
	ID             int64                  `db:"id"`
	Queue          string                 `db:"queue"`
	Name           string                 `db:"name"`
	Payload        []byte                 `db:"payload"`
	Metadata       map[string]string      `db:"metadata"`
	Priority       int32                  `db:"priority"`
	State          string                 `db:"state"`
	Attempt        int32                  `db:"attempt"`
	MaxAttempts    int32                  `db:"max_attempts"`
	Backoff        service.Backoff        `db:"backoff"`
	UniqueKey      *string                `db:"unique_key"`
	RunAt          time.Time              `db:"run_at"`
	CreatedAt      time.Time              `db:"created_at"`
	StartedAt      *time.Time             `db:"started_at"`
	FinishedAt     *time.Time             `db:"finished_at"`
	LeaseToken     *string                `db:"lease_token"`
	LeaseExpiresAt *time.Time             `db:"lease_expires_at"`
	LeasedBy       *string                `db:"leased_by"`
	Result         []byte                 `db:"result"`
	Progress       []byte                 `db:"progress"`
	Errors         []service.AttemptError `db:"errors"`
	flowColumns
}

// flowColumns are a job's place in a flow (migrations/0004_flows.sql).
type flowColumns struct {
	ParentID         *int64     `db:"parent_id"`
	FlowID           *int64     `db:"flow_id"`
	ChildName        *string    `db:"child_name"`
	ChildPolicy      *string    `db:"child_policy"`
	ChildCount       int32      `db:"child_count"`
	PendingChildren  int32      `db:"pending_children"`
	ChildrenDeadline *time.Time `db:"children_deadline"`
}

func (f flowColumns) toLink() service.FlowLink {
	return service.FlowLink{
		FlowID:           deref(f.FlowID),
		ParentID:         deref(f.ParentID),
		ChildName:        deref(f.ChildName),
		Policy:           service.ChildPolicy(deref(f.ChildPolicy)),
		ChildCount:       f.ChildCount,
		PendingChildren:  f.PendingChildren,
		ChildrenDeadline: deref(f.ChildrenDeadline),
	}
}

func (r jobRow) toJob() service.Job {
	return service.Job{
		ID:             r.ID,
		Queue:          r.Queue,
		Name:           r.Name,
		Payload:        r.Payload,
		Metadata:       r.Metadata,
		Priority:       r.Priority,
		State:          service.JobState(r.State),
		Attempt:        r.Attempt,
		MaxAttempts:    r.MaxAttempts,
		Backoff:        r.Backoff,
		UniqueKey:      deref(r.UniqueKey),
		RunAt:          r.RunAt,
		CreatedAt:      r.CreatedAt,
		StartedAt:      deref(r.StartedAt),
		FinishedAt:     deref(r.FinishedAt),
		Result:         r.Result,
		Errors:         r.Errors,
		Progress:       r.Progress,
		LeasedBy:       deref(r.LeasedBy),
		LeaseExpiresAt: deref(r.LeaseExpiresAt),
		Flow:           r.flowColumns.toLink(),
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func collectJobs(rows pgx.Rows) ([]service.Job, error) {
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[jobRow])
	if err != nil {
		return nil, err
	}
	jobs := make([]service.Job, len(rs))
	for i, r := range rs {
		jobs[i] = r.toJob()
	}
	return jobs, nil
}

// interpretError turns driver errors into the service's domain errors.
func interpretError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return service.ErrNotFound
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return fmt.Errorf("%w: %s", service.ErrAlreadyExists, pgErr.ConstraintName)
	}
	if unavailable(err) {
		return fmt.Errorf("%w: %w", service.ErrUnavailable, err)
	}
	return err
}

// unavailable reports whether err means PostgreSQL could not be reached or
// the connection broke (refused, reset, shutting down, starting up, too many
// connections), as opposed to a statement that failed.
func unavailable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false // the caller gave up; that is its own error
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "57P01", // admin_shutdown
			pgErr.Code == "57P02", // crash_shutdown
			pgErr.Code == "57P03", // cannot_connect_now
			pgErr.Code == "53300": // too_many_connections
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		pgconn.SafeToRetry(err)
}

// GetJob returns one job.
func (s *Store) GetJob(ctx context.Context, id int64) (service.Job, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+jobColumns+` FROM queued_jobs j WHERE j.id = $1`, id)
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[jobRow])
	if err != nil {
		return service.Job{}, fmt.Errorf("get job %d: %w", id, interpretError(err))
	}
	return r.toJob(), nil
}

// leaseLostOrNotFound explains why a fenced write matched no row: the job
// is gone (ErrNotFound) or is no longer leased with that token (ErrLeaseLost).
func (s *Store) leaseLostOrNotFound(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, id int64) error {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM queued_jobs WHERE id = $1)`, id).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("job %d: %w", id, service.ErrNotFound)
	}
	return fmt.Errorf("job %d: %w", id, service.ErrLeaseLost)
}

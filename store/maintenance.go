package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/queued-dev/queued/service"
)

// expireSQL takes back leases that expired before @now, oldest first, and
// revokes them so a worker still running the job is told.
const expireSQL = `
WITH gone AS (
    SELECT id FROM queued_jobs
    WHERE state = 'running' AND lease_expires_at < @now
    ORDER BY lease_expires_at
    LIMIT @limit
    FOR UPDATE SKIP LOCKED
), ` + abandonSetSQL

// ExpireLeases takes back up to limit expired leases.
func (s *Store) ExpireLeases(ctx context.Context, now time.Time, limit int) (int, error) {
	n, err := s.abandon(ctx, expireSQL, pgx.NamedArgs{
		"now": now, "limit": limit, "reason": "lease expired", "revoke": true,
	}, now)
	if err != nil {
		return 0, fmt.Errorf("expire leases: %w", err)
	}
	return n, nil
}

// promoteSQL makes due scheduled jobs available, notifies their queues, and
// reports when the next scheduled job is due.
const promoteSQL = `
WITH due AS (
    SELECT id FROM queued_jobs
    WHERE state = 'scheduled' AND run_at <= @now
    ORDER BY run_at
    LIMIT @limit
    FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE queued_jobs j SET state = 'available'
    FROM due WHERE j.id = due.id
    RETURNING j.queue
), notified AS (
    SELECT pg_notify('` + channelAvailable + `', q.queue) FROM (SELECT DISTINCT queue FROM upd) q
)
SELECT (SELECT count(*) FROM upd) AS promoted,
       (SELECT min(run_at) FROM queued_jobs WHERE state = 'scheduled' AND run_at > @now) AS next
WHERE (SELECT count(*) FROM notified) >= 0`

// PromoteScheduled makes up to limit due scheduled jobs available.
func (s *Store) PromoteScheduled(ctx context.Context, now time.Time, limit int) (int, time.Time, error) {
	var n int
	var next *time.Time
	if err := s.pool.QueryRow(ctx, promoteSQL, pgx.NamedArgs{"now": now, "limit": limit}).Scan(&n, &next); err != nil {
		return 0, time.Time{}, fmt.Errorf("promote scheduled jobs: %w", err)
	}
	return n, deref(next), nil
}

// deleteFinishedSQL removes finished jobs past retention, oldest first. A
// flow child is kept while its parent is unfinished (the parent receives its
// result when it runs), and a parent while it has unfinished children (so
// the tree stays whole while any of it runs).
const deleteFinishedSQL = `
DELETE FROM queued_jobs WHERE id IN (
    SELECT id FROM queued_jobs j
    WHERE state IN ('completed', 'failed', 'cancelled') AND finished_at < @before
      AND (j.parent_id IS NULL OR NOT EXISTS (
          SELECT 1 FROM queued_jobs p
          WHERE p.id = j.parent_id AND p.state NOT IN ('completed', 'failed', 'cancelled')))
      AND (j.child_count = 0 OR NOT EXISTS (
          SELECT 1 FROM queued_jobs c
          WHERE c.parent_id = j.id AND c.state NOT IN ('completed', 'failed', 'cancelled')))
    ORDER BY finished_at
    LIMIT @limit
    FOR UPDATE SKIP LOCKED
)`

// DeleteFinished removes up to limit finished jobs older than before.
func (s *Store) DeleteFinished(ctx context.Context, before time.Time, limit int) (int, error) {
	tag, err := s.pool.Exec(ctx, deleteFinishedSQL, pgx.NamedArgs{"before": before, "limit": limit})
	if err != nil {
		return 0, fmt.Errorf("delete finished jobs: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// cancelSQL cancels an unfinished job and reports the state it had. A
// running job's lease is voided (so its worker's ack is refused) and the
// cancellation is published for the replica holding the worker's stream.
const cancelSQL = `
WITH old AS (
    SELECT id, state FROM queued_jobs WHERE id = @id FOR UPDATE
), upd AS (
    UPDATE queued_jobs j
    SET state = 'cancelled', finished_at = @now, lease_token = NULL, lease_expires_at = NULL
    FROM old
    WHERE j.id = old.id AND old.state NOT IN ('completed', 'failed', 'cancelled')
    RETURNING old.state AS previous_state, ` + jobColumns + `
), notified AS (
    SELECT pg_notify('` + channelCancelled + `', id::text || ':' || '` + kindCancelled + `' || ':' || @reason::text)
    FROM upd WHERE previous_state = 'running'
)
SELECT * FROM upd WHERE (SELECT count(*) FROM notified) >= 0`

type cancelledRow struct {
	PreviousState string `db:"previous_state"`
	jobRow
}

// errCancelFinished rolls back a cancellation whose job turned out to be
// finished.
var errCancelFinished = errors.New("finished")

// CancelJob cancels an unfinished job, with its unfinished flow subtree,
// and tells its parent, all in one transaction. The subtree is cancelled
// before the job itself so that rows are locked children first (see
// store/flow_settle.go); if the job finished meanwhile, all of it rolls back.
func (s *Store) CancelJob(ctx context.Context, id int64, reason string, now time.Time) (service.Job, service.JobState, error) {
	var out cancelledRow
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var state string
		var childCount int32
		err := tx.QueryRow(ctx, `SELECT state, child_count FROM queued_jobs WHERE id = $1`, id).Scan(&state, &childCount)
		if err != nil {
			return interpretError(err)
		}
		if service.JobState(state).Terminal() {
			return errCancelFinished
		}
		var evs []childEvent
		if childCount > 0 {
			if evs, err = cancelSubtrees(ctx, tx, []int64{id}, "its parent was cancelled: "+reason, now); err != nil {
				return err
			}
		}
		rows, _ := tx.Query(ctx, cancelSQL, pgx.NamedArgs{"id": id, "now": now, "reason": reason})
		rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[cancelledRow])
		if err != nil {
			return err
		}
		if len(rs) == 0 {
			return errCancelFinished
		}
		out = rs[0]
		if ev, ok := (finishedRow{ID: id, State: out.State, ParentID: out.ParentID, Policy: out.ChildPolicy,
			ChildName: out.ChildName, Message: &reason}).event(); ok {
			evs = append(evs, ev)
		}
		return settleParents(ctx, tx, evs, now)
	})
	switch {
	case errors.Is(err, errCancelFinished):
		return service.Job{}, "", fmt.Errorf("cancel job %d: %w", id, service.ErrFinished)
	case errors.Is(err, service.ErrNotFound):
		return service.Job{}, "", fmt.Errorf("cancel job %d: %w", id, err)
	case err != nil:
		return service.Job{}, "", fmt.Errorf("cancel job %d: %w", id, interpretError(err))
	}
	return out.toJob(), service.JobState(out.PreviousState), nil
}

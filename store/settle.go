package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/queued-dev/queued/service"
)

// Every statement here matches a job on (id, lease_token, state = running):
// a worker that lost its lease (expired and re-leased, cancelled, already
// settled) matches nothing, so a late or repeated call changes nothing.
// Tokens are compared as text so that a malformed token is simply a lease
// that does not match, not a failed batch.

// completeSQL acks many leases in one statement. A completed flow child
// counts as finished for its parent in the same statement (settleParentsSQL),
// which releases the parent when it was the last child: there is no moment
// at which the child is completed and its parent does not know. For plain
// jobs ev is empty and the parent part touches no row.
//
// A parent released early (policy continue) and one of its children acked
// in the same batch: the parent's row is updated by done, so the parent part
// skips it and its pending_children keeps counting that child. The counter
// only matters while a parent waits, which this one no longer does.
//
// done matches "running with this token" as lease_token = token AND
// lease_expires_at IS NOT NULL, which the table's lease_iff_running check
// makes equivalent to state = 'running', on purpose: spelled as
// state = 'running', the condition lets the planner scan every running job
// through the partial lease-expiry index and hash-join the batch against
// them, and the cached generic plan of this prepared statement does just
// that. An ack batch then costs as much as the number of leases held
// across all workers instead of its own size (measured: 3x slower with 1,000
// leases out, far worse with dead index entries under load). Without it the
// only sensible plan is the batch joined to the primary key.
const completeSQL = `
WITH done AS (
    UPDATE queued_jobs j
    SET state = 'completed', result = a.result, finished_at = @now,
        lease_token = NULL, lease_expires_at = NULL
    FROM unnest(@ids::bigint[], @tokens::text[], @results::bytea[]) AS a(id, token, result)
    WHERE j.id = a.id AND j.lease_token::text = a.token AND j.lease_expires_at IS NOT NULL
    RETURNING j.id, j.parent_id, j.child_policy
), ev AS (
    SELECT parent_id, id AS child_id, 'completed'::text AS outcome, child_policy AS policy, ''::text AS message
    FROM done WHERE parent_id IS NOT NULL
), ` + settleParentsSQL + `
SELECT id FROM done WHERE (SELECT count(*) FROM parents_notified) >= 0`

// CompleteJobs acks many leases in one statement. A job named twice in one
// batch is acked once; the repeat is reported as a lost lease.
func (s *Store) CompleteJobs(ctx context.Context, acks []service.Completion, now time.Time) ([]error, error) {
	errs := make([]error, len(acks))
	ids, tokens, results := make([]int64, 0, len(acks)), make([]string, 0, len(acks)), make([][]byte, 0, len(acks))
	first := make(map[int64]int, len(acks))
	for i, a := range acks {
		if _, dup := first[a.JobID]; dup {
			errs[i] = fmt.Errorf("job %d: %w", a.JobID, service.ErrLeaseLost)
			continue
		}
		first[a.JobID] = i
		ids, tokens, results = append(ids, a.JobID), append(tokens, a.Token), append(results, a.Result)
	}
	args := pgx.NamedArgs{"ids": ids, "tokens": tokens, "results": results, "now": now}
	var done []int64
	var err error
	for attempt := 1; ; attempt++ {
		// The statement is atomic: when PostgreSQL aborts it to break a
		// deadlock with a flow's cancellation, running it again is safe.
		rows, _ := s.pool.Query(ctx, completeSQL, args)
		done, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		if attempt >= 5 || !isDeadlock(err) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("complete %d jobs: %w", len(ids), interpretError(err))
	}
	if len(done) == len(ids) {
		return errs, nil
	}
	ok := make(map[int64]bool, len(done))
	for _, id := range done {
		ok[id] = true
	}
	var missing []int64
	for _, id := range ids {
		if !ok[id] {
			missing = append(missing, id)
		}
	}
	rows, _ := s.pool.Query(ctx, `SELECT id FROM queued_jobs WHERE id = ANY($1)`, missing)
	existing, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("explain %d refused acks: %w", len(missing), err)
	}
	exists := make(map[int64]bool, len(existing))
	for _, id := range existing {
		exists[id] = true
	}
	for _, id := range missing {
		if exists[id] {
			errs[first[id]] = fmt.Errorf("job %d: %w", id, service.ErrLeaseLost)
		} else {
			errs[first[id]] = fmt.Errorf("job %d: %w", id, service.ErrNotFound)
		}
	}
	return errs, nil
}

const lockLeasedSQL = `SELECT ` + jobColumns + ` FROM queued_jobs j
WHERE j.id = @id AND j.lease_token::text = @token AND j.state = 'running'
FOR UPDATE`

// failAttemptSQL records the attempt's error and moves the job to the state
// the service chose. The notification fires only for an immediate retry.
const failAttemptSQL = `
WITH upd AS (
    UPDATE queued_jobs j
    SET state = @state, run_at = @run_at,
        finished_at = CASE WHEN @state = 'failed' THEN @now::timestamptz END,
        lease_token = NULL, lease_expires_at = NULL,
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempt, 'error', @error::text, 'at', @now::timestamptz))
    WHERE j.id = @id
    RETURNING ` + jobColumns + `
), notified AS (
    SELECT pg_notify('` + channelAvailable + `', queue) FROM upd WHERE state = 'available'
)
SELECT * FROM upd WHERE (SELECT count(*) FROM notified) >= 0`

// FailAttempt locks the leased row, lets p.Decide pick the next state from
// it, and writes that state, all in one transaction; a flow child that
// failed for good updates its parent in that transaction too.
func (s *Store) FailAttempt(ctx context.Context, p service.FailParams) (service.Job, error) {
	var out service.Job
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, lockLeasedSQL, pgx.NamedArgs{"id": p.JobID, "token": p.Token})
		row, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[jobRow])
		if errors.Is(err, pgx.ErrNoRows) {
			return s.leaseLostOrNotFound(ctx, tx, p.JobID)
		}
		if err != nil {
			return err
		}
		state, runAt := p.Decide(row.toJob())
		rows, _ = tx.Query(ctx, failAttemptSQL, pgx.NamedArgs{
			"id": p.JobID, "state": string(state), "run_at": runAt, "now": p.Now, "error": p.Error,
		})
		updated, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[jobRow])
		if err != nil {
			return err
		}
		out = updated.toJob()
		if out.State == service.StateFailed && out.Flow.ParentID != 0 {
			ev, _ := finishedRow{ID: out.ID, State: string(out.State), ParentID: &out.Flow.ParentID,
				Policy: updated.ChildPolicy, ChildName: updated.ChildName, Message: &p.Error}.event()
			return settleParents(ctx, tx, []childEvent{ev}, p.Now)
		}
		return nil
	})
	if err != nil {
		return service.Job{}, fmt.Errorf("fail attempt of job %d: %w", p.JobID, interpretError(err))
	}
	return out, nil
}

// ExtendLease moves the expiry of a lease the caller still holds.
func (s *Store) ExtendLease(ctx context.Context, ref service.LeaseRef, expiresAt time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE queued_jobs SET lease_expires_at = @expires
		WHERE id = @id AND lease_token::text = @token AND state = 'running'`,
		pgx.NamedArgs{"id": ref.JobID, "token": ref.Token, "expires": expiresAt})
	if err != nil {
		return fmt.Errorf("extend lease of job %d: %w", ref.JobID, interpretError(err))
	}
	if tag.RowsAffected() == 0 {
		return s.leaseLostOrNotFound(ctx, s.pool, ref.JobID)
	}
	return nil
}

// UpdateProgress stores progress on a job the caller still holds.
func (s *Store) UpdateProgress(ctx context.Context, ref service.LeaseRef, progress []byte) error {
	tag, err := s.pool.Exec(ctx, `UPDATE queued_jobs SET progress = @progress
		WHERE id = @id AND lease_token::text = @token AND state = 'running'`,
		pgx.NamedArgs{"id": ref.JobID, "token": ref.Token, "progress": progress})
	if err != nil {
		return fmt.Errorf("update progress of job %d: %w", ref.JobID, interpretError(err))
	}
	if tag.RowsAffected() == 0 {
		return s.leaseLostOrNotFound(ctx, s.pool, ref.JobID)
	}
	return nil
}

// releaseSQL hands leases back as if they had never been taken: the
// attempt is uncounted and the job keeps its place (run_at) in the queue.
const releaseSQL = `
WITH upd AS (
    UPDATE queued_jobs j
    SET state = 'available', attempt = j.attempt - 1,
        lease_token = NULL, lease_expires_at = NULL, leased_by = NULL
    FROM unnest(@ids::bigint[], @tokens::text[]) AS r(id, token)
    WHERE j.id = r.id AND j.lease_token::text = r.token AND j.state = 'running'
    RETURNING j.id, j.queue
), notified AS (
    SELECT pg_notify('` + channelAvailable + `', q.queue) FROM (SELECT DISTINCT queue FROM upd) q
)
SELECT id FROM upd WHERE (SELECT count(*) FROM notified) >= 0`

// ReleaseJobs hands leases back without counting their attempts.
func (s *Store) ReleaseJobs(ctx context.Context, refs []service.LeaseRef, now time.Time) ([]int64, error) {
	ids, tokens := leaseRefArrays(refs)
	rows, _ := s.pool.Query(ctx, releaseSQL, pgx.NamedArgs{"ids": ids, "tokens": tokens})
	released, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("release %d jobs: %w", len(refs), interpretError(err))
	}
	return released, nil
}

// abandonSetSQL ends the attempt of jobs whose worker is gone: back to
// available at once while attempts remain (the worker's failure is not the
// job's), failed otherwise. The caller supplies the rows in "gone".
const abandonSetSQL = `
upd AS (
    UPDATE queued_jobs j
    SET state = CASE WHEN j.attempt >= j.max_attempts THEN 'failed' ELSE 'available' END,
        finished_at = CASE WHEN j.attempt >= j.max_attempts THEN @now::timestamptz END,
        run_at = CASE WHEN j.attempt >= j.max_attempts THEN j.run_at ELSE @now::timestamptz END,
        lease_token = NULL, lease_expires_at = NULL,
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempt, 'error', @reason::text, 'at', @now::timestamptz))
    FROM gone g
    WHERE j.id = g.id
    RETURNING j.id, j.queue, j.state, j.parent_id, j.child_policy, j.child_name
), notified AS (
    SELECT pg_notify('` + channelAvailable + `', q.queue)
    FROM (SELECT DISTINCT queue FROM upd WHERE state = 'available') q
), revoked AS (
    -- Tell the replica holding the worker's stream, if any, that the lease
    -- is gone, so it frees the slot and the worker stops the job.
    SELECT pg_notify('` + channelCancelled + `', id::text || ':' || '` + kindLeaseExpired + `' || ':' || @reason::text) FROM upd WHERE @revoke::bool
)
SELECT id, state, parent_id, child_policy, child_name, @reason::text AS message
FROM upd WHERE (SELECT count(*) FROM notified) + (SELECT count(*) FROM revoked) >= 0`

const abandonSQL = `
WITH gone AS (
    SELECT j.id FROM queued_jobs j
    JOIN unnest(@ids::bigint[], @tokens::text[]) AS r(id, token)
      ON j.id = r.id AND j.lease_token::text = r.token
    WHERE j.state = 'running'
    FOR UPDATE OF j
), ` + abandonSetSQL

// AbandonJobs requeues (or fails) the jobs of a worker whose stream ended.
func (s *Store) AbandonJobs(ctx context.Context, refs []service.LeaseRef, reason string, now time.Time) (int, error) {
	ids, tokens := leaseRefArrays(refs)
	n, err := s.abandon(ctx, abandonSQL, pgx.NamedArgs{"ids": ids, "tokens": tokens, "reason": reason, "now": now, "revoke": false}, now)
	if err != nil {
		return 0, fmt.Errorf("requeue %d abandoned jobs: %w", len(refs), err)
	}
	return n, nil
}

// abandon runs an abandonSetSQL statement and, in the same transaction,
// tells the parents of flow children that failed for good.
func (s *Store) abandon(ctx context.Context, query string, args pgx.NamedArgs, now time.Time) (int, error) {
	var n int
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, query, args)
		gone, err := pgx.CollectRows(rows, pgx.RowToStructByName[finishedRow])
		if err != nil {
			return err
		}
		n = len(gone)
		return settleParents(ctx, tx, events(gone), now)
	})
	return n, err
}

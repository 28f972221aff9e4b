package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/queued-dev/queued/service"
)

// How a finished flow child updates its parent.
//
// Every path that moves a job to a terminal state (ack, nack, lease expiry,
// a vanished worker, cancel, the children deadline) updates the job's parent
// in the same transaction: the ack in the same statement (completeSQL), the
// others through settleParents. A job reaches a terminal state once (every
// such write matches only unfinished rows, and acks and nacks only the
// current lease), so a child counts for its parent exactly once, however
// often it was retried or redelivered.
//
// Lock order: rows are locked child before parent, and several rows in
// descending id order. A flow is inserted in pre-order with ids drawn in
// that order, so a parent's id is below its children's: both rules agree,
// which keeps the common paths free of deadlocks. Walking down a tree after
// a parent failed (cancelling its subtree) goes against that order; the
// rare deadlock it can meet is resolved by PostgreSQL aborting one
// transaction, which inTx (and CompleteJobs) simply run again.

// settleParentsSQL applies finished children to their parents. It expects a
// CTE ev(parent_id, child_id, outcome, policy, message) before it and
// defines parents (the updated parents with their state before and after)
// and parents_notified, which the final SELECT must reference.
//
// The parents are locked in descending id order and their counters are
// decremented under that lock, so when the last two children finish at the
// same time, the second transaction sees the first one's decrement and only
// one of them moves the parent out of waiting_children.
const settleParentsSQL = `
ev_agg AS (
    SELECT parent_id, count(*)::int AS n,
           coalesce(bool_or(outcome <> 'completed' AND policy = 'continue'), false) AS cont,
           (array_agg(message ORDER BY child_id)
               FILTER (WHERE outcome <> 'completed' AND policy = 'fail_parent'))[1] AS fail_msg
    FROM ev GROUP BY parent_id
), parents_locked AS (
    SELECT p.id, p.state AS old_state, a.n, a.cont, a.fail_msg
    FROM queued_jobs p JOIN ev_agg a ON a.parent_id = p.id
    WHERE p.id = ANY(ARRAY(SELECT parent_id FROM ev_agg))
    ORDER BY p.id DESC
    FOR UPDATE OF p
), parents AS (
    UPDATE queued_jobs p
    SET pending_children = greatest(p.pending_children - l.n, 0),
        state = CASE
            WHEN l.old_state <> 'waiting_children' THEN p.state
            WHEN l.fail_msg IS NOT NULL THEN 'failed'
            WHEN l.cont OR p.pending_children - l.n <= 0 THEN
                CASE WHEN p.run_at > @now::timestamptz THEN 'scheduled' ELSE 'available' END
            ELSE p.state END,
        finished_at = CASE WHEN l.old_state = 'waiting_children' AND l.fail_msg IS NOT NULL
            THEN @now::timestamptz ELSE p.finished_at END,
        errors = CASE WHEN l.old_state = 'waiting_children' AND l.fail_msg IS NOT NULL
            THEN p.errors || jsonb_build_array(jsonb_build_object(
                'attempt', p.attempt, 'error', l.fail_msg, 'at', @now::timestamptz))
            ELSE p.errors END
    FROM parents_locked l
    WHERE p.id = l.id
    RETURNING p.id, p.queue, l.old_state, p.state, p.parent_id, p.child_policy, p.child_name, l.fail_msg
), parents_notified AS (
    SELECT pg_notify('` + channelAvailable + `', q.queue)
    FROM (SELECT DISTINCT queue FROM parents
          WHERE old_state = 'waiting_children' AND state = 'available') q
)`

// settleParentsStmt applies the events passed as arrays.
const settleParentsStmt = `
WITH ev AS (
    SELECT * FROM unnest(@parent_ids::bigint[], @child_ids::bigint[], @outcomes::text[],
                         @policies::text[], @messages::text[])
        AS ev(parent_id, child_id, outcome, policy, message)
), ` + settleParentsSQL + `
SELECT id, old_state, state, parent_id, child_policy, child_name, fail_msg FROM parents
WHERE (SELECT count(*) FROM parents_notified) >= 0`

// childEvent is a flow child that reached a terminal state.
type childEvent struct {
	parentID, childID int64
	outcome           service.JobState
	policy            string
	message           string // why it did not complete; empty when it did
}

// finishedRow is a job that just reached a terminal state, as the writes
// that can end a flow child return it.
type finishedRow struct {
	ID        int64   `db:"id"`
	State     string  `db:"state"`
	ParentID  *int64  `db:"parent_id"`
	Policy    *string `db:"child_policy"`
	ChildName *string `db:"child_name"`
	Message   *string `db:"message"`
}

// event is the row as an event for its parent; ok is false outside flows.
func (r finishedRow) event() (childEvent, bool) {
	if r.ParentID == nil || !service.JobState(r.State).Terminal() {
		return childEvent{}, false
	}
	ev := childEvent{parentID: *r.ParentID, childID: r.ID, outcome: service.JobState(r.State), policy: deref(r.Policy)}
	if ev.outcome != service.StateCompleted {
		ev.message = fmt.Sprintf("child %q (job %d) %s: %s", deref(r.ChildName), r.ID, r.State, deref(r.Message))
	}
	return ev, true
}

func events(rows []finishedRow) []childEvent {
	var out []childEvent
	for _, r := range rows {
		if ev, ok := r.event(); ok {
			out = append(out, ev)
		}
	}
	return out
}

type settledParentRow struct {
	ID       int64   `db:"id"`
	OldState string  `db:"old_state"`
	State    string  `db:"state"`
	ParentID *int64  `db:"parent_id"`
	Policy   *string `db:"child_policy"`
	Name     *string `db:"child_name"`
	FailMsg  *string `db:"fail_msg"`
}

// settleParents applies finished children to their parents in tx, and
// follows the consequences until none is left: a parent that fails because
// of a child has its unfinished subtree cancelled and is itself a failed
// child of its own parent.
func settleParents(ctx context.Context, tx pgx.Tx, evs []childEvent, now time.Time) error {
	for len(evs) > 0 {
		n := len(evs)
		parentIDs, childIDs := make([]int64, n), make([]int64, n)
		outcomes, policies, messages := make([]string, n), make([]string, n), make([]string, n)
		for i, e := range evs {
			parentIDs[i], childIDs[i] = e.parentID, e.childID
			outcomes[i], policies[i], messages[i] = string(e.outcome), e.policy, e.message
		}
		rows, _ := tx.Query(ctx, settleParentsStmt, pgx.NamedArgs{
			"parent_ids": parentIDs, "child_ids": childIDs, "outcomes": outcomes,
			"policies": policies, "messages": messages, "now": now,
		})
		settled, err := pgx.CollectRows(rows, pgx.RowToStructByName[settledParentRow])
		if err != nil {
			return fmt.Errorf("update parents of %d finished children: %w", n, err)
		}
		evs = nil
		var failed []int64
		for _, p := range settled {
			if p.OldState != string(service.StateWaitingChildren) || p.State != string(service.StateFailed) {
				continue
			}
			failed = append(failed, p.ID)
			if ev, ok := (finishedRow{ID: p.ID, State: p.State, ParentID: p.ParentID, Policy: p.Policy, ChildName: p.Name, Message: p.FailMsg}).event(); ok {
				evs = append(evs, ev)
			}
		}
		if len(failed) > 0 {
			more, err := cancelSubtrees(ctx, tx, failed, "a sibling failed, so the parent failed", now)
			if err != nil {
				return err
			}
			evs = append(evs, more...)
		}
	}
	return nil
}

// cancelSubtreesSQL cancels every unfinished descendant of the roots,
// locking them in descending id order (children before parents), and tells
// the replicas holding running ones. Each cancelled job records why.
const cancelSubtreesSQL = `
WITH RECURSIVE sub AS (
    SELECT id FROM queued_jobs WHERE parent_id = ANY(@roots::bigint[])
    UNION ALL
    SELECT j.id FROM queued_jobs j JOIN sub ON j.parent_id = sub.id
), locked AS (
    SELECT j.id, j.state AS old_state FROM queued_jobs j
    WHERE j.id = ANY(ARRAY(SELECT id FROM sub))
      AND j.state NOT IN ('completed', 'failed', 'cancelled')
    ORDER BY j.id DESC
    FOR UPDATE OF j
), upd AS (
    UPDATE queued_jobs j
    SET state = 'cancelled', finished_at = @now, lease_token = NULL, lease_expires_at = NULL,
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempt, 'error', @reason::text, 'at', @now::timestamptz))
    FROM locked l
    WHERE j.id = l.id
    RETURNING j.id, j.state, j.parent_id, j.child_policy, j.child_name, @reason::text AS message, l.old_state
), notified AS (
    SELECT pg_notify('` + channelCancelled + `', id::text || ':' || '` + kindCancelled + `' || ':' || @reason::text)
    FROM upd WHERE old_state = 'running'
)
SELECT id, state, parent_id, child_policy, child_name, message FROM upd
WHERE (SELECT count(*) FROM notified) >= 0`

// cancelSubtrees cancels the unfinished descendants of roots and returns
// the events their parents must see.
func cancelSubtrees(ctx context.Context, tx pgx.Tx, roots []int64, reason string, now time.Time) ([]childEvent, error) {
	rows, _ := tx.Query(ctx, cancelSubtreesSQL, pgx.NamedArgs{"roots": roots, "reason": reason, "now": now})
	cancelled, err := pgx.CollectRows(rows, pgx.RowToStructByName[finishedRow])
	if err != nil {
		return nil, fmt.Errorf("cancel the subtrees of %d jobs: %w", len(roots), err)
	}
	return events(cancelled), nil
}

// expireChildDeadlinesSQL picks waiting parents whose deadline passed. They
// are locked (skipping any another sweeper holds) so that none is released
// by its last child while its children are being cancelled.
const expireChildDeadlinesSQL = `
SELECT id FROM queued_jobs
WHERE state = 'waiting_children' AND children_deadline < @now
ORDER BY children_deadline
LIMIT @limit
FOR UPDATE SKIP LOCKED`

// ExpireChildDeadlines cancels the unfinished children of parents whose
// children deadline passed; each cancelled child then acts on its parent by
// its policy (fail_parent fails it; ignore and continue release it).
func (s *Store) ExpireChildDeadlines(ctx context.Context, now time.Time, limit int) (int, error) {
	var n int
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, expireChildDeadlinesSQL, pgx.NamedArgs{"now": now, "limit": limit})
		parents, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil || len(parents) == 0 {
			n = 0
			return err
		}
		n = len(parents)
		evs, err := cancelSubtrees(ctx, tx, parents, "the parent's deadline for its children passed", now)
		if err != nil {
			return err
		}
		return settleParents(ctx, tx, evs, now)
	})
	if err != nil {
		return 0, fmt.Errorf("expire children deadlines: %w", err)
	}
	return n, nil
}

// inTx runs fn in a transaction, and runs it again (up to a few times) when
// PostgreSQL aborted it to break a deadlock: fn's writes are all or nothing,
// so running it again is safe.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, s.pool, fn)
		if attempt < 5 && isDeadlock(err) {
			continue
		}
		return err
	}
}

func isDeadlock(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

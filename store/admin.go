package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/queued-dev/queued/service"
)

// listJobColumns is jobColumns without the job's bytes (payload, result,
// progress), for listings that do not ask for them: a page of 500 jobs then
// costs what their metadata costs, whatever their payloads weigh.
const listJobColumns = `j.id, j.queue, j.name, ''::bytea AS payload, j.metadata, j.priority, j.state, j.attempt,
	j.max_attempts, j.backoff, j.unique_key, j.run_at, j.created_at, j.started_at, j.finished_at,
	j.lease_token::text AS lease_token, j.lease_expires_at, j.leased_by, NULL::bytea AS result, NULL::bytea AS progress, j.errors,
	j.parent_id, j.flow_id, j.child_name, j.child_policy, j.child_count, j.pending_children, j.children_deadline`

// Fragments of the ListJobs statement. Only the filters a query sets are
// added, so the planner sees the plain predicates and picks the index that
// fits them (see migrations/0007_admin.sql); a catch-all
// "(@queue = ” OR queue = @queue)" would hide them from it.
const (
	listJobsFrom       = ` FROM queued_jobs j WHERE true`
	listJobsByQueue    = ` AND j.queue = @queue`
	listJobsByState    = ` AND j.state = @state`
	listJobsByStates   = ` AND j.state = ANY(@states)`
	listJobsByName     = ` AND j.name = @name`
	listJobsAfterDesc  = ` AND j.id < @after`
	listJobsAfterAsc   = ` AND j.id > @after`
	listJobsOrderDesc  = ` ORDER BY j.id DESC LIMIT @limit`
	listJobsOrderAsc   = ` ORDER BY j.id LIMIT @limit`
	listJobsSelectFull = `SELECT ` + jobColumns
	listJobsSelectThin = `SELECT ` + listJobColumns
)

// ListJobs returns up to q.Limit jobs after q.AfterID in q.Order. The
// keyset condition on the primary key makes each page one index range
// read, and a job inserted meanwhile has a larger id than every job listed
// so far, so pages neither repeat nor skip the jobs that match throughout.
//
// The statement is planned for its actual arguments (QueryExecModeExec: an
// unnamed statement, planned at bind time), so a state filter on finished
// states can use the partial indexes whose predicates it implies; a cached
// generic plan cannot prove those implications.
func (s *Store) ListJobs(ctx context.Context, q service.JobQuery) ([]service.Job, error) {
	var sql strings.Builder
	args := pgx.NamedArgs{"limit": q.Limit}
	if q.IncludePayload {
		sql.WriteString(listJobsSelectFull)
	} else {
		sql.WriteString(listJobsSelectThin)
	}
	sql.WriteString(listJobsFrom)
	if q.Filter.Queue != "" {
		sql.WriteString(listJobsByQueue)
		args["queue"] = q.Filter.Queue
	}
	switch len(q.Filter.States) {
	case 0:
	case 1:
		// Equality, not ANY: PostgreSQL 15 reads an index in order past an
		// equality but not past an array match, and the order is the point.
		sql.WriteString(listJobsByState)
		args["state"] = string(q.Filter.States[0])
	default:
		sql.WriteString(listJobsByStates)
		states := make([]string, len(q.Filter.States))
		for i, st := range q.Filter.States {
			states[i] = string(st)
		}
		args["states"] = states
	}
	if q.Filter.Name != "" {
		sql.WriteString(listJobsByName)
		args["name"] = q.Filter.Name
	}
	desc := q.Order != service.OldestFirst
	if q.AfterID > 0 {
		args["after"] = q.AfterID
		if desc {
			sql.WriteString(listJobsAfterDesc)
		} else {
			sql.WriteString(listJobsAfterAsc)
		}
	}
	if desc {
		sql.WriteString(listJobsOrderDesc)
	} else {
		sql.WriteString(listJobsOrderAsc)
	}
	rows, err := s.pool.Query(ctx, sql.String(), pgx.QueryExecModeExec, args)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", interpretError(err))
	}
	jobs, err := collectJobs(rows)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", interpretError(err))
	}
	return jobs, nil
}

// retryJobSQL locks the job, and only if it is failed or cancelled, not a
// flow child and not waiting on children, makes it available at @now with
// a fresh set of attempts. Its errors stay; its result and progress belong
// to the earlier run and go. The first CTE always returns the locked row
// (re-read after any concurrent update), so the caller learns the state
// that refused it from the same statement. Making the job available and
// announcing it on channelAvailable commit together.
const retryJobSQL = `
WITH target AS (
    SELECT id, state, parent_id, pending_children FROM queued_jobs WHERE id = @id FOR UPDATE
), upd AS (
    UPDATE queued_jobs j
       SET state = 'available', attempt = 0, run_at = @now, finished_at = NULL,
           result = NULL, progress = NULL, leased_by = NULL
      FROM target t
     WHERE j.id = t.id AND t.state IN ('failed', 'cancelled')
       AND t.parent_id IS NULL AND t.pending_children = 0
    RETURNING ` + jobColumns + `
), notified AS (
    SELECT pg_notify('` + channelAvailable + `', queue) FROM upd
)
SELECT t.state AS target_state, t.parent_id AS target_parent, t.pending_children AS target_pending,
       (SELECT count(*) FROM notified) AS notified
  FROM target t`

// RetryJob makes a failed or cancelled job available again (see
// service.AdminStore).
func (s *Store) RetryJob(ctx context.Context, id int64, now time.Time) (service.Job, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return service.Job{}, fmt.Errorf("retry job %d: %w", id, interpretError(err))
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it is a no-op
	var (
		state    string
		parent   *int64
		pending  int32
		notified int64
	)
	err = tx.QueryRow(ctx, retryJobSQL, pgx.NamedArgs{"id": id, "now": now}).Scan(&state, &parent, &pending, &notified)
	if err != nil {
		return service.Job{}, fmt.Errorf("retry job %d: %w", id, interpretError(err))
	}
	if notified == 0 {
		refusal := &service.StateError{JobID: id, State: service.JobState(state), Op: "retry",
			Hint: "only failed or cancelled jobs can be retried"}
		switch {
		case state != string(service.StateFailed) && state != string(service.StateCancelled):
		case parent != nil:
			refusal.Hint = fmt.Sprintf("it is a child in a flow and its parent (job %d) has already counted its outcome; retry the flow's root instead", *parent)
		default:
			refusal.Hint = fmt.Sprintf("%d of its children are still unfinished", pending)
		}
		return service.Job{}, refusal
	}
	job, err := s.getJobTx(ctx, tx, id)
	if err != nil {
		return service.Job{}, fmt.Errorf("retry job %d: %w", id, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return service.Job{}, fmt.Errorf("retry job %d: %w", id, interpretError(err))
	}
	return job, nil
}

func (s *Store) getJobTx(ctx context.Context, tx pgx.Tx, id int64) (service.Job, error) {
	rows, _ := tx.Query(ctx, `SELECT `+jobColumns+` FROM queued_jobs j WHERE j.id = $1`, id)
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[jobRow])
	if err != nil {
		return service.Job{}, interpretError(err)
	}
	return r.toJob(), nil
}

// deleteJobSQL locks the job and deletes it only if it is finished; it
// returns the locked state either way, so a refusal names the state that
// caused it. A job that finishes concurrently is seen finished (FOR UPDATE
// waits for and re-reads it) and deleted.
const deleteJobSQL = `
WITH target AS (
    SELECT id, state FROM queued_jobs WHERE id = @id FOR UPDATE
), del AS (
    DELETE FROM queued_jobs j USING target t
     WHERE j.id = t.id AND t.state IN ('completed', 'failed', 'cancelled')
    RETURNING j.id
)
SELECT t.state, EXISTS (SELECT 1 FROM del) AS deleted FROM target t`

// DeleteJob deletes a finished job (see service.AdminStore).
func (s *Store) DeleteJob(ctx context.Context, id int64) (service.JobState, error) {
	var (
		state   string
		deleted bool
	)
	if err := s.pool.QueryRow(ctx, deleteJobSQL, pgx.NamedArgs{"id": id}).Scan(&state, &deleted); err != nil {
		return "", fmt.Errorf("delete job %d: %w", id, interpretError(err))
	}
	if !deleted {
		return "", &service.StateError{JobID: id, State: service.JobState(state), Op: "delete",
			Hint: "only finished jobs can be deleted: cancel it first"}
	}
	return service.JobState(state), nil
}

// finishedCountsSQL finds the queues that hold finished jobs with a loose
// index scan (one descent of queued_jobs_finished_by_queue per queue, not a
// read of every finished row) and counts each queue's completed, failed and
// cancelled jobs up to @cap + 1, so the cost is bounded by the number of
// queues times the cap, however many finished rows there are.
const finishedCountsSQL = `
WITH RECURSIVE fq AS (
    (SELECT queue FROM queued_jobs
      WHERE state IN ('completed', 'failed', 'cancelled') ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM queued_jobs j
             WHERE j.state IN ('completed', 'failed', 'cancelled') AND j.queue > fq.queue
             ORDER BY j.queue LIMIT 1)
      FROM fq WHERE fq.queue IS NOT NULL
)
SELECT fq.queue, s.state,
       (SELECT count(*) FROM (SELECT 1 FROM queued_jobs j
                               WHERE j.queue = fq.queue AND j.state = s.state
                                 AND j.state IN ('completed', 'failed', 'cancelled')
                               LIMIT @cap + 1) capped) AS count
  FROM fq CROSS JOIN (VALUES ('completed'), ('failed'), ('cancelled')) s(state)
 WHERE fq.queue IS NOT NULL`

type finishedCountRow struct {
	Queue string `db:"queue"`
	State string `db:"state"`
	Count int64  `db:"count"`
}

// QueueOverviews counts each queue's jobs by state: live states exactly
// (queueStatsSQL, one small partial index each), finished states up to
// finishedCap (see service.AdminStore). Both reads see one snapshot.
func (s *Store) QueueOverviews(ctx context.Context, finishedCap int) ([]service.QueueOverview, error) {
	var out []service.QueueOverview
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		byQueue := map[string]*service.QueueOverview{}
		get := func(q string) *service.QueueOverview {
			o, ok := byQueue[q]
			if !ok {
				o = &service.QueueOverview{Queue: q, Counts: map[service.JobState]int64{}}
				byQueue[q] = o
			}
			return o
		}
		rows, _ := tx.Query(ctx, queueStatsSQL)
		live, err := pgx.CollectRows(rows, pgx.RowToStructByName[queueStatRow])
		if err != nil {
			return err
		}
		for _, r := range live {
			o := get(r.Queue)
			o.Counts[service.JobState(r.State)] = r.Count
			if r.OldestRunAt != nil {
				o.OldestAvailableAt = *r.OldestRunAt
			}
		}
		rows, _ = tx.Query(ctx, finishedCountsSQL, pgx.NamedArgs{"cap": finishedCap})
		finished, err := pgx.CollectRows(rows, pgx.RowToStructByName[finishedCountRow])
		if err != nil {
			return err
		}
		for _, r := range finished {
			if r.Count == 0 {
				continue
			}
			o := get(r.Queue)
			if r.Count > int64(finishedCap) {
				r.Count = int64(finishedCap)
				o.FinishedCapped = true
			}
			o.Counts[service.JobState(r.State)] = r.Count
		}
		out = make([]service.QueueOverview, 0, len(byQueue))
		for _, o := range byQueue {
			out = append(out, *o)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count jobs by queue: %w", interpretError(err))
	}
	slices.SortFunc(out, func(a, b service.QueueOverview) int { return strings.Compare(a.Queue, b.Queue) })
	return out, nil
}

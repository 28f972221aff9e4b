package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/queued-dev/queued/service"
)

// changeColumns are the columns of a change: a job without its payload,
// with the state it had before and the transaction that wrote it (see
// migrations/0002_watch.sql). xid8 travels as text, then bigint: it is far
// below 2^63.
const changeColumns = `j.id, j.queue, j.name, j.metadata, j.priority, j.state, j.attempt,
	j.max_attempts, j.run_at, j.created_at, j.started_at, j.finished_at, j.lease_expires_at,
	j.leased_by, j.result, j.progress, j.errors, j.prev_state,
	j.change_xid::text::bigint AS change_xid`

// The changes a cursor has not seen are those written by a transaction at
// or after its snapshot's xmax, or by one its snapshot listed as in
// progress; minus, for each transaction it stopped inside, the jobs up to
// the id it reached. Each branch walks the change_xid index in order and stops at
// the limit, so a long-open transaction costs a point lookup. The snapshot
// the rows were read in is returned with them (pg_current_snapshot() is
// the statement's own snapshot), so the next read starts exactly where
// this one ended.
const (
	unseenAfterXmax = `j.change_xid >= @xmax::bigint::text::xid8`
	unseenInXip     = `j.change_xid = ANY(@xip::bigint[]::text[]::xid8[])`
	notPart         = `NOT EXISTS (SELECT 1 FROM unnest(@part_xids::bigint[]::text[]::xid8[], @part_ids::bigint[]) p(xid, id)
                   WHERE j.change_xid = p.xid AND j.id <= p.id)`
)

func readChangesSQL(filter string) string {
	branch := func(unseen string) string {
		return `(SELECT ` + changeColumns + ` FROM queued_jobs j
         WHERE ` + unseen + ` AND ` + notPart + filter + `
         ORDER BY j.change_xid, j.id LIMIT @limit)`
	}
	return `
SELECT s.snap, c.*
FROM (SELECT pg_current_snapshot()::text AS snap) s
LEFT JOIN LATERAL (
    SELECT * FROM (` + branch(unseenAfterXmax) + `
        UNION ALL ` + branch(unseenInXip) + `) u
    ORDER BY u.change_xid, u.id LIMIT @limit
) c ON true`
}

// One statement per filter shape, so each gets its own plan: a watch by
// ids reads by primary key, a queue watch and the hub by the change index.
var (
	readChangesAllSQL   = readChangesSQL("")
	readChangesQueueSQL = readChangesSQL(` AND j.queue = @queue AND (cardinality(@names::text[]) = 0 OR j.name = ANY(@names))`)
	readChangesIDsSQL   = `
SELECT s.snap, c.*
FROM (SELECT pg_current_snapshot()::text AS snap) s
LEFT JOIN LATERAL (
    SELECT ` + changeColumns + ` FROM queued_jobs j
    WHERE j.id = ANY(@ids) AND (` + unseenAfterXmax + ` OR ` + unseenInXip + `) AND ` + notPart + `
    ORDER BY j.change_xid, j.id LIMIT @limit
) c ON true`
)

// currentJobsSQL reads jobs and the snapshot they were read in, in one
// statement so they agree.
const currentJobsSQL = `
SELECT s.snap, c.*
FROM (SELECT pg_current_snapshot()::text AS snap) s
LEFT JOIN LATERAL (
    SELECT ` + changeColumns + ` FROM queued_jobs j WHERE j.id = ANY(@ids)
) c ON true`

// changeRow is a row of a change read. Every read returns at least one
// row, for the snapshot; when it found no change, the rest is NULL.
type changeRow struct {
	Snap           string                 `db:"snap"`
	ID             *int64                 `db:"id"`
	Queue          *string                `db:"queue"`
	Name           *string                `db:"name"`
	Metadata       map[string]string      `db:"metadata"`
	Priority       *int32                 `db:"priority"`
	State          *string                `db:"state"`
	Attempt        *int32                 `db:"attempt"`
	MaxAttempts    *int32                 `db:"max_attempts"`
	RunAt          *time.Time             `db:"run_at"`
	CreatedAt      *time.Time             `db:"created_at"`
	StartedAt      *time.Time             `db:"started_at"`
	FinishedAt     *time.Time             `db:"finished_at"`
	LeaseExpiresAt *time.Time             `db:"lease_expires_at"`
	LeasedBy       *string                `db:"leased_by"`
	Result         []byte                 `db:"result"`
	Progress       []byte                 `db:"progress"`
	Errors         []service.AttemptError `db:"errors"`
	PrevState      *string                `db:"prev_state"`
	ChangeXID      *int64                 `db:"change_xid"`
}

func (r changeRow) toChange() service.Change {
	return service.Change{
		XID:       uint64(deref(r.ChangeXID)),
		PrevState: service.JobState(deref(r.PrevState)),
		Job: service.Job{
			ID:             *r.ID,
			Queue:          deref(r.Queue),
			Name:           deref(r.Name),
			Metadata:       r.Metadata,
			Priority:       deref(r.Priority),
			State:          service.JobState(deref(r.State)),
			Attempt:        deref(r.Attempt),
			MaxAttempts:    deref(r.MaxAttempts),
			RunAt:          deref(r.RunAt),
			CreatedAt:      deref(r.CreatedAt),
			StartedAt:      deref(r.StartedAt),
			FinishedAt:     deref(r.FinishedAt),
			LeaseExpiresAt: deref(r.LeaseExpiresAt),
			LeasedBy:       deref(r.LeasedBy),
			Result:         r.Result,
			Progress:       r.Progress,
			Errors:         r.Errors,
		},
	}
}

// ReadChanges reads the changes after q.After.
func (s *Store) ReadChanges(ctx context.Context, q service.ChangeQuery) (service.ChangeBatch, error) {
	xip := make([]int64, len(q.After.Seen.Xip))
	for i, x := range q.After.Seen.Xip {
		xip[i] = int64(x)
	}
	partXIDs, partIDs := make([]int64, len(q.After.Parts)), make([]int64, len(q.After.Parts))
	for i, p := range q.After.Parts {
		partXIDs[i], partIDs[i] = int64(p.XID), p.ID
	}
	args := pgx.NamedArgs{
		"xmax": int64(q.After.Seen.Xmax), "xip": xip,
		"part_xids": partXIDs, "part_ids": partIDs, "limit": q.Limit,
	}
	query := readChangesAllSQL
	switch {
	case len(q.Filter.JobIDs) > 0:
		query, args["ids"] = readChangesIDsSQL, q.Filter.JobIDs
	case q.Filter.Queue != "":
		names := q.Filter.Names
		if names == nil {
			names = []string{}
		}
		query, args["queue"], args["names"] = readChangesQueueSQL, q.Filter.Queue, names
	}
	changes, snap, err := s.readChanges(ctx, query, args)
	if err != nil {
		return service.ChangeBatch{}, fmt.Errorf("read job changes: %w", err)
	}
	return service.ChangeBatch{Changes: changes, Snapshot: snap, Complete: len(changes) < q.Limit}, nil
}

// CurrentJobs reads jobs with the snapshot they were read in.
func (s *Store) CurrentJobs(ctx context.Context, ids []int64) ([]service.Change, service.Snapshot, error) {
	if ids == nil {
		ids = []int64{}
	}
	changes, snap, err := s.readChanges(ctx, currentJobsSQL, pgx.NamedArgs{"ids": ids})
	if err != nil {
		return nil, service.Snapshot{}, fmt.Errorf("read %d jobs for a watch: %w", len(ids), err)
	}
	return changes, snap, nil
}

func (s *Store) readChanges(ctx context.Context, query string, args pgx.NamedArgs) ([]service.Change, service.Snapshot, error) {
	rows, _ := s.pool.Query(ctx, query, args)
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[changeRow])
	if err != nil {
		return nil, service.Snapshot{}, err
	}
	if len(rs) == 0 {
		return nil, service.Snapshot{}, errors.New("no snapshot row")
	}
	snap, err := service.ParseSnapshot(rs[0].Snap)
	if err != nil {
		return nil, service.Snapshot{}, err
	}
	var out []service.Change
	for _, r := range rs {
		if r.ID == nil {
			continue
		}
		out = append(out, r.toChange())
	}
	return out, snap, nil
}

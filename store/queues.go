package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/queued-dev/queued/service"
)

// channelQueues carries a queue's name whenever its settings (pause, rate
// limit) change, so every replica reloads them.
const channelQueues = "queued_queues"

// refilledTokens is the bucket of queued_queues row q refilled to @now: the
// tokens left plus rate_max per rate_per_ms since refilled_at, capped at
// rate_max. A refilled_at ahead of @now (another replica's clock is ahead)
// adds nothing. Only meaningful where q.rate_max > 0.
const refilledTokens = `least(q.rate_max::float8, q.tokens +
    greatest(extract(epoch FROM (@now::timestamptz - q.refilled_at))::float8, 0) * 1000 * q.rate_max / q.rate_per_ms)`

const queueSettingsColumns = `queue, paused, rate_max, rate_per_ms, updated_at`

type queueSettingsRow struct {
	Queue     string    `db:"queue"`
	Paused    bool      `db:"paused"`
	RateMax   int32     `db:"rate_max"`
	RatePerMS int64     `db:"rate_per_ms"`
	UpdatedAt time.Time `db:"updated_at"`
}

func (r queueSettingsRow) toSettings() service.QueueSettings {
	return service.QueueSettings{
		Queue:     r.Queue,
		Paused:    r.Paused,
		Limit:     service.RateLimit{Max: int(r.RateMax), Per: time.Duration(r.RatePerMS) * time.Millisecond},
		UpdatedAt: r.UpdatedAt,
	}
}

// setQueuePausedSQL pauses or resumes a queue, creating its row, and
// announces the change in the same transaction. A resume also announces the
// queue's jobs as available, so idle dispatchers claim the backlog at once.
const setQueuePausedSQL = `
WITH up AS (
    INSERT INTO queued_queues AS q (queue, paused, refilled_at, updated_at)
    VALUES (@queue, @paused, @now, @now)
    ON CONFLICT (queue) DO UPDATE SET paused = EXCLUDED.paused, updated_at = EXCLUDED.updated_at
    RETURNING q.*
), notified AS (
    SELECT pg_notify('` + channelQueues + `', queue) FROM up
    UNION ALL
    SELECT pg_notify('` + channelAvailable + `', queue) FROM up WHERE NOT paused
)
SELECT ` + queueSettingsColumns + ` FROM up WHERE (SELECT count(*) FROM notified) >= 0`

// SetQueuePaused pauses or resumes a queue.
func (s *Store) SetQueuePaused(ctx context.Context, queue string, paused bool, now time.Time) (service.QueueSettings, error) {
	rows, _ := s.pool.Query(ctx, setQueuePausedSQL, pgx.NamedArgs{"queue": queue, "paused": paused, "now": now})
	return collectQueueSettings(rows, "pause/resume queue "+queue)
}

// setRateLimitSQL sets or clears a queue's limit and announces it. A queue
// that had no limit gets a full bucket (a burst of max, as after an idle
// spell); one that had a limit keeps what the old limit left it, refilled
// to @now at the old rate and capped at the new max, so tightening a limit
// never grants a fresh burst. Clearing empties the bucket.
const setRateLimitSQL = `
WITH up AS (
    INSERT INTO queued_queues AS q (queue, rate_max, rate_per_ms, tokens, refilled_at, updated_at)
    VALUES (@queue, @max::integer, @per_ms::bigint, @max::integer, @now, @now)
    ON CONFLICT (queue) DO UPDATE SET
        rate_max = EXCLUDED.rate_max,
        rate_per_ms = EXCLUDED.rate_per_ms,
        tokens = CASE WHEN q.rate_max = 0 THEN EXCLUDED.tokens
                      ELSE least(EXCLUDED.rate_max::float8, ` + refilledTokens + `) END,
        refilled_at = greatest(q.refilled_at, EXCLUDED.refilled_at),
        updated_at = EXCLUDED.updated_at
    RETURNING q.*
), notified AS (
    SELECT pg_notify('` + channelQueues + `', queue) FROM up
    UNION ALL
    SELECT pg_notify('` + channelAvailable + `', queue) FROM up
)
SELECT ` + queueSettingsColumns + ` FROM up WHERE (SELECT count(*) FROM notified) >= 0`

// SetRateLimit sets or (Max 0) clears a queue's rate limit.
func (s *Store) SetRateLimit(ctx context.Context, queue string, limit service.RateLimit, now time.Time) (service.QueueSettings, error) {
	rows, _ := s.pool.Query(ctx, setRateLimitSQL, pgx.NamedArgs{
		"queue": queue, "max": limit.Max, "per_ms": limit.Per.Milliseconds(), "now": now,
	})
	return collectQueueSettings(rows, "set rate limit of queue "+queue)
}

func collectQueueSettings(rows pgx.Rows, op string) (service.QueueSettings, error) {
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[queueSettingsRow])
	if err != nil {
		return service.QueueSettings{}, fmt.Errorf("%s: %w", op, interpretError(err))
	}
	return r.toSettings(), nil
}

// ListQueueSettings returns every configured queue, by name. The table has
// one row per queue an operator touched, so every replica reads it whole.
func (s *Store) ListQueueSettings(ctx context.Context) ([]service.QueueSettings, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+queueSettingsColumns+` FROM queued_queues ORDER BY queue`)
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[queueSettingsRow])
	if err != nil {
		return nil, fmt.Errorf("list queue settings: %w", interpretError(err))
	}
	out := make([]service.QueueSettings, len(rs))
	for i, r := range rs {
		out[i] = r.toSettings()
	}
	return out, nil
}

// countOneQueueSQL is queueStatsSQL for one queue. The filter is pushed
// into each UNION ALL branch, so each still reads only its state's small
// partial index.
const countOneQueueSQL = `SELECT queue, state, count FROM (` + queueStatsSQL + `) s WHERE queue = @queue`

type stateCountRow struct {
	Queue string `db:"queue"`
	State string `db:"state"`
	Count int64  `db:"count"`
}

// CountLiveJobs counts unfinished jobs by queue and state.
func (s *Store) CountLiveJobs(ctx context.Context, queue string) (map[string]map[service.JobState]int64, error) {
	query, args := `SELECT queue, state, count FROM (`+queueStatsSQL+`) s`, pgx.NamedArgs{}
	if queue != "" {
		query, args = countOneQueueSQL, pgx.NamedArgs{"queue": queue}
	}
	rows, _ := s.pool.Query(ctx, query, args)
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[stateCountRow])
	if err != nil {
		return nil, fmt.Errorf("count jobs: %w", interpretError(err))
	}
	out := make(map[string]map[service.JobState]int64)
	for _, r := range rs {
		if out[r.Queue] == nil {
			out[r.Queue] = make(map[service.JobState]int64)
		}
		out[r.Queue][service.JobState(r.State)] = r.Count
	}
	return out, nil
}

// claimLimitedSQL claims from one rate-limited queue under its token
// bucket, in one statement:
//
//   - bucket locks the queue's row (FOR UPDATE: claimers of this queue on
//     every replica take turns here) and refills it to @now. After waiting
//     for the lock, FOR UPDATE reads the row as the previous claimer left
//     it, so no token is spent twice.
//   - picked takes at most as many jobs as whole tokens (no bucket row,
//     i.e. the limit was cleared: LIMIT least(@limit, NULL) is @limit).
//   - claimed leases them exactly as ClaimJobs does (claimSetSQL).
//   - spent debits one token per claimed job and moves refilled_at to
//     @now, never backwards, so a replica whose clock is behind cannot
//     refill the same interval twice.
//
// A crash anywhere rolls all of it back: no token is spent on a job that
// was not claimed.
const claimLimitedSQL = `
WITH bucket AS (
    SELECT ` + refilledTokens + ` AS tokens, greatest(q.refilled_at, @now) AS refilled_at
    FROM queued_queues q
    WHERE q.queue = @queue AND q.rate_max > 0
    FOR UPDATE
), picked AS (
    SELECT id FROM queued_jobs
    WHERE state = 'available' AND queue = @queue
    ORDER BY priority, run_at, id
    LIMIT least(@limit, (SELECT floor(tokens)::int FROM bucket))
    FOR UPDATE SKIP LOCKED
), slotted AS (
    -- Through an array: the planner cannot know how many rows a LIMIT
    -- computed from the bucket yields and would join picked to
    -- queued_jobs by hashing the whole table; an unnest is estimated at
    -- 100 rows, so the join walks the primary key.
    SELECT s.id, s.slot FROM unnest((SELECT array_agg(id) FROM picked)) WITH ORDINALITY AS s(id, slot)
), claimed AS (` + claimSetSQL + `
), spent AS (
    UPDATE queued_queues q
    SET tokens = greatest(b.tokens - (SELECT count(*) FROM claimed), 0),
        refilled_at = b.refilled_at
    FROM bucket b
    WHERE q.queue = @queue
)
SELECT * FROM claimed`

// ClaimLimited claims from p.Queues[0] at most as many jobs as its bucket
// holds whole tokens, taking one token per job.
func (s *Store) ClaimLimited(ctx context.Context, p service.ClaimParams) ([]service.ClaimedJob, error) {
	if len(p.Queues) != 1 {
		return nil, fmt.Errorf("claim limited: want one queue, got %d", len(p.Queues))
	}
	rows, _ := s.pool.Query(ctx, claimLimitedSQL, pgx.NamedArgs{
		"queue":   p.Queues[0],
		"limit":   len(p.Owners),
		"owners":  p.Owners,
		"expires": p.ExpiresAt,
		"now":     p.Now,
	})
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[claimedRow])
	if err != nil {
		return nil, fmt.Errorf("claim jobs from rate-limited queue %q: %w", p.Queues[0], interpretError(err))
	}
	return claimedJobs(rs), nil
}

// readBucketSQL reads a limited queue's bucket refilled to @now, taking
// nothing and locking nothing.
const readBucketSQL = `
SELECT q.rate_max, q.rate_per_ms, ` + refilledTokens + ` AS tokens, greatest(q.refilled_at, @now) AS refilled_at
FROM queued_queues q
WHERE q.queue = @queue AND q.rate_max > 0`

type bucketRow struct {
	RateMax    int32     `db:"rate_max"`
	RatePerMS  int64     `db:"rate_per_ms"`
	Tokens     float64   `db:"tokens"`
	RefilledAt time.Time `db:"refilled_at"`
}

// ReadBucket returns a queue's bucket as of now.
func (s *Store) ReadBucket(ctx context.Context, queue string, now time.Time) (service.Bucket, error) {
	rows, _ := s.pool.Query(ctx, readBucketSQL, pgx.NamedArgs{"queue": queue, "now": now})
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[bucketRow])
	if err != nil {
		if err = interpretError(err); errors.Is(err, service.ErrNotFound) {
			return service.Bucket{}, nil // not limited
		}
		return service.Bucket{}, fmt.Errorf("read bucket of queue %q: %w", queue, err)
	}
	return service.Bucket{
		Limit:      service.RateLimit{Max: int(r.RateMax), Per: time.Duration(r.RatePerMS) * time.Millisecond},
		Tokens:     r.Tokens,
		RefilledAt: r.RefilledAt,
	}, nil
}

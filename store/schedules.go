package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/queued-dev/queued/service"
)

// channelSchedules carries a schedule's name whenever it changes, so the
// scheduler of every replica recomputes its sleep.
const channelSchedules = "queued_schedules"

const scheduleColumns = `s.id, s.name, s.spec, s.time_zone, s.queue, s.job_name, s.payload, s.metadata,
	s.priority, s.max_attempts, s.backoff, s.start_at, s.end_at, s.paused, s.catch_up,
	s.catch_up_window_ms, s.overlap, s.next_fire_at, s.last_fire_at, s.last_job_id, s.created_at, s.updated_at`

// scheduleRow is a row of queued_schedules as scanned; it never leaves
// this package.
type scheduleRow struct {
	ID              int64             `db:"id"`
	Name            string            `db:"name"`
	Spec            string            `db:"spec"`
	TimeZone        string            `db:"time_zone"`
	Queue           string            `db:"queue"`
	JobName         string            `db:"job_name"`
	Payload         []byte            `db:"payload"`
	Metadata        map[string]string `db:"metadata"`
	Priority        int32             `db:"priority"`
	MaxAttempts     int32             `db:"max_attempts"`
	Backoff         service.Backoff   `db:"backoff"`
	StartAt         *time.Time        `db:"start_at"`
	EndAt           *time.Time        `db:"end_at"`
	Paused          bool              `db:"paused"`
	CatchUp         string            `db:"catch_up"`
	CatchUpWindowMS int64             `db:"catch_up_window_ms"`
	Overlap         string            `db:"overlap"`
	NextFireAt      *time.Time        `db:"next_fire_at"`
	LastFireAt      *time.Time        `db:"last_fire_at"`
	LastJobID       *int64            `db:"last_job_id"`
	CreatedAt       time.Time         `db:"created_at"`
	UpdatedAt       time.Time         `db:"updated_at"`
}

func (r scheduleRow) toSchedule() service.Schedule {
	return service.Schedule{
		ID:       r.ID,
		Name:     r.Name,
		Spec:     r.Spec,
		TimeZone: r.TimeZone,
		Job: service.JobTemplate{
			Queue: r.Queue, Name: r.JobName, Payload: r.Payload, Metadata: r.Metadata,
			Priority: r.Priority, MaxAttempts: r.MaxAttempts, Backoff: r.Backoff,
		},
		StartAt:       deref(r.StartAt),
		EndAt:         deref(r.EndAt),
		Paused:        r.Paused,
		CatchUp:       service.CatchUpPolicy(r.CatchUp),
		CatchUpWindow: time.Duration(r.CatchUpWindowMS) * time.Millisecond,
		Overlap:       service.OverlapPolicy(r.Overlap),
		NextFireAt:    deref(r.NextFireAt),
		LastFireAt:    deref(r.LastFireAt),
		LastJobID:     deref(r.LastJobID),
		CreatedAt:     r.CreatedAt,
		UpdatedAt:     r.UpdatedAt,
	}
}

func collectSchedule(rows pgx.Rows) (service.Schedule, error) {
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[scheduleRow])
	if err != nil {
		return service.Schedule{}, interpretError(err)
	}
	return r.toSchedule(), nil
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// upsertScheduleSQL creates or replaces a schedule by name and announces it.
// A replace keeps the stored next tick unless the timing changed or the
// schedule is being resumed, so re-applying an unchanged schedule (a deploy
// that upserts on every start) neither skips nor repeats a tick. Template
// edits take effect at the next tick because firing reads the row.
const upsertScheduleSQL = `
WITH up AS (
    INSERT INTO queued_schedules AS s (name, spec, time_zone, queue, job_name, payload, metadata,
        priority, max_attempts, backoff, start_at, end_at, paused, catch_up, catch_up_window_ms,
        overlap, next_fire_at, created_at, updated_at)
    VALUES (@name, @spec, @time_zone, @queue, @job_name, @payload, @metadata::jsonb,
        @priority, @max_attempts, @backoff::jsonb, @start_at, @end_at, @paused, @catch_up, @catch_up_window_ms,
        @overlap, @next_fire_at, @now, @now)
    ON CONFLICT (name) DO UPDATE SET
        spec = EXCLUDED.spec, time_zone = EXCLUDED.time_zone, queue = EXCLUDED.queue,
        job_name = EXCLUDED.job_name, payload = EXCLUDED.payload, metadata = EXCLUDED.metadata,
        priority = EXCLUDED.priority, max_attempts = EXCLUDED.max_attempts, backoff = EXCLUDED.backoff,
        start_at = EXCLUDED.start_at, end_at = EXCLUDED.end_at, paused = EXCLUDED.paused,
        catch_up = EXCLUDED.catch_up, catch_up_window_ms = EXCLUDED.catch_up_window_ms,
        overlap = EXCLUDED.overlap, updated_at = EXCLUDED.updated_at,
        next_fire_at = CASE
            WHEN (s.spec, s.time_zone, s.start_at, s.end_at)
                 IS DISTINCT FROM (EXCLUDED.spec, EXCLUDED.time_zone, EXCLUDED.start_at, EXCLUDED.end_at)
              OR (s.paused AND NOT EXCLUDED.paused)
            THEN EXCLUDED.next_fire_at
            ELSE s.next_fire_at END
    RETURNING s.*
), notified AS (
    SELECT pg_notify('` + channelSchedules + `', name) FROM up
)
SELECT ` + scheduleColumns + ` FROM up s WHERE (SELECT count(*) FROM notified) >= 0`

// UpsertSchedule creates or replaces a schedule.
func (s *Store) UpsertSchedule(ctx context.Context, sc service.Schedule) (service.Schedule, error) {
	meta, backoff, err := encodeJobJSON(sc.Job.Metadata, sc.Job.Backoff)
	if err != nil {
		return service.Schedule{}, err
	}
	payload := sc.Job.Payload
	if payload == nil {
		payload = []byte{}
	}
	rows, _ := s.pool.Query(ctx, upsertScheduleSQL, pgx.NamedArgs{
		"name": sc.Name, "spec": sc.Spec, "time_zone": sc.TimeZone, "queue": sc.Job.Queue,
		"job_name": sc.Job.Name, "payload": payload, "metadata": meta, "priority": sc.Job.Priority,
		"max_attempts": sc.Job.MaxAttempts, "backoff": backoff, "start_at": optTime(sc.StartAt),
		"end_at": optTime(sc.EndAt), "paused": sc.Paused, "catch_up": string(sc.CatchUp),
		"catch_up_window_ms": sc.CatchUpWindow.Milliseconds(), "overlap": string(sc.Overlap),
		"next_fire_at": optTime(sc.NextFireAt), "now": sc.UpdatedAt,
	})
	out, err := collectSchedule(rows)
	if err != nil {
		return service.Schedule{}, fmt.Errorf("upsert schedule %q: %w", sc.Name, err)
	}
	return out, nil
}

// GetSchedule returns one schedule.
func (s *Store) GetSchedule(ctx context.Context, name string) (service.Schedule, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+scheduleColumns+` FROM queued_schedules s WHERE s.name = $1`, name)
	sc, err := collectSchedule(rows)
	if err != nil {
		return service.Schedule{}, fmt.Errorf("get schedule %q: %w", name, err)
	}
	return sc, nil
}

// ListSchedules returns every schedule, by name.
func (s *Store) ListSchedules(ctx context.Context) ([]service.Schedule, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+scheduleColumns+` FROM queued_schedules s ORDER BY s.name`)
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[scheduleRow])
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	out := make([]service.Schedule, len(rs))
	for i, r := range rs {
		out[i] = r.toSchedule()
	}
	return out, nil
}

// pauseScheduleSQL pauses a schedule and announces it. It waits for a
// firing in progress, so once it returns no tick of the schedule fires.
const pauseScheduleSQL = `
WITH up AS (
    UPDATE queued_schedules s SET paused = true, updated_at = @now
    WHERE s.name = @name
    RETURNING s.*
), notified AS (
    SELECT pg_notify('` + channelSchedules + `', name) FROM up
)
SELECT ` + scheduleColumns + ` FROM up s WHERE (SELECT count(*) FROM notified) >= 0`

// PauseSchedule pauses a schedule.
func (s *Store) PauseSchedule(ctx context.Context, name string, now time.Time) (service.Schedule, error) {
	rows, _ := s.pool.Query(ctx, pauseScheduleSQL, pgx.NamedArgs{"name": name, "now": now})
	sc, err := collectSchedule(rows)
	if err != nil {
		return service.Schedule{}, fmt.Errorf("pause schedule %q: %w", name, err)
	}
	return sc, nil
}

// resumeScheduleSQL unpauses a locked, paused schedule with the next tick
// the service computed, and announces it.
const resumeScheduleSQL = `
WITH up AS (
    UPDATE queued_schedules s SET paused = false, next_fire_at = @next_fire_at, updated_at = @now
    WHERE s.id = @id
    RETURNING s.*
), notified AS (
    SELECT pg_notify('` + channelSchedules + `', name) FROM up
)
SELECT ` + scheduleColumns + ` FROM up s WHERE (SELECT count(*) FROM notified) >= 0`

// ResumeSchedule unpauses a schedule. Resuming an active one changes
// nothing.
func (s *Store) ResumeSchedule(ctx context.Context, name string, now time.Time, next func(service.Schedule) time.Time) (service.Schedule, error) {
	var out service.Schedule
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT `+scheduleColumns+` FROM queued_schedules s WHERE s.name = $1 FOR UPDATE`, name)
		cur, err := collectSchedule(rows)
		if err != nil {
			return err
		}
		if !cur.Paused {
			out = cur
			return nil
		}
		rows, _ = tx.Query(ctx, resumeScheduleSQL, pgx.NamedArgs{"id": cur.ID, "next_fire_at": optTime(next(cur)), "now": now})
		out, err = collectSchedule(rows)
		return err
	})
	if err != nil {
		return service.Schedule{}, fmt.Errorf("resume schedule %q: %w", name, err)
	}
	return out, nil
}

// deleteScheduleSQL removes a schedule (its fired ticks go with it) and
// announces it.
const deleteScheduleSQL = `
WITH del AS (
    DELETE FROM queued_schedules WHERE name = @name RETURNING name
), notified AS (
    SELECT pg_notify('` + channelSchedules + `', name) FROM del
)
SELECT count(*) FROM del WHERE (SELECT count(*) FROM notified) >= 0`

// DeleteSchedule removes a schedule.
func (s *Store) DeleteSchedule(ctx context.Context, name string) error {
	var n int
	if err := s.pool.QueryRow(ctx, deleteScheduleSQL, pgx.NamedArgs{"name": name}).Scan(&n); err != nil {
		return fmt.Errorf("delete schedule %q: %w", name, err)
	}
	if n == 0 {
		return fmt.Errorf("schedule %q: %w", name, service.ErrNotFound)
	}
	return nil
}

// dueSchedulesSQL locks due schedules, skipping rows another replica is
// firing: that replica either commits (the tick is done and next_fire_at has
// moved) or dies (its lock goes and the tick is still due here). It also
// reads whether each schedule's previous job is unfinished, for overlap.
const dueSchedulesSQL = `
SELECT ` + scheduleColumns + `,
       coalesce(j.state IN ('scheduled', 'available', 'running', 'waiting_children'), false) AS last_job_unfinished
FROM queued_schedules s
LEFT JOIN queued_jobs j ON j.id = s.last_job_id
WHERE s.next_fire_at <= @now AND NOT s.paused
ORDER BY s.next_fire_at
LIMIT @limit
FOR UPDATE OF s SKIP LOCKED`

type dueScheduleRow struct {
	scheduleRow
	LastJobUnfinished bool `db:"last_job_unfinished"`
}

// fireSchedulesSQL fires a batch of locked due schedules in one statement:
// it records every planned tick as fired, enqueues one job per tick not
// recorded before (from its schedule's template), notifies the queues as any
// insert of available jobs does, and stores each schedule's next tick, last
// tick and latest job.
//
// The ticks come as parallel arrays (@tick_schedules, @ticks, @labels), the
// schedules' new state as another set (@ids, @nexts, @last_fires), all
// computed in Go by the planning code. A tick already in
// queued_schedule_fires (its primary key) inserts no record and so enqueues
// nothing, which keeps firing idempotent whatever the caller's clock or plan;
// the job's unique key "schedule:<name>:<tick>" is a second guard. Jobs are
// inserted in (schedule, tick) order, so the largest id a schedule gets is
// the job of its latest tick, which overlap skip looks at next time.
const fireSchedulesSQL = `
WITH planned AS (
    SELECT * FROM unnest(@tick_schedules::bigint[], @ticks::timestamptz[], @labels::text[])
        AS k(schedule_id, tick, label)
), fired AS (
    INSERT INTO queued_schedule_fires (schedule_id, tick, fired_at)
    SELECT k.schedule_id, k.tick, @now FROM planned k
    ON CONFLICT (schedule_id, tick) DO NOTHING
    RETURNING schedule_id, tick
), ins AS (
    INSERT INTO queued_jobs (queue, name, payload, metadata, priority, state, max_attempts,
                             backoff, unique_key, run_at, created_at)
    SELECT s.queue, s.job_name, s.payload,
           s.metadata || jsonb_build_object('queued.schedule', s.name, 'queued.tick', k.label),
           s.priority, 'available', s.max_attempts, s.backoff,
           'schedule:' || s.name || ':' || k.label, @now, @now
    FROM fired f
    JOIN planned k ON k.schedule_id = f.schedule_id AND k.tick = f.tick
    JOIN queued_schedules s ON s.id = f.schedule_id
    ORDER BY f.schedule_id, f.tick
    ON CONFLICT (queue, unique_key)
        WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'available', 'running', 'waiting_children')
        DO NOTHING
    RETURNING id, queue, metadata->>'queued.schedule' AS schedule_name
), last_jobs AS (
    SELECT s.id AS schedule_id, max(i.id) AS job_id
    FROM ins i JOIN queued_schedules s ON s.name = i.schedule_name
    GROUP BY s.id
), advanced AS (
    UPDATE queued_schedules s SET
        next_fire_at = a.next_fire_at,
        last_fire_at = coalesce(a.last_fire_at, s.last_fire_at),
        last_job_id = coalesce(lj.job_id, s.last_job_id)
    FROM unnest(@ids::bigint[], @nexts::timestamptz[], @last_fires::timestamptz[])
        AS a(id, next_fire_at, last_fire_at)
    LEFT JOIN last_jobs lj ON lj.schedule_id = a.id
    WHERE s.id = a.id
    RETURNING s.id
), notified AS (
    SELECT pg_notify('` + channelAvailable + `', q.queue) FROM (SELECT DISTINCT queue FROM ins) q
)
SELECT count(*) FROM advanced WHERE (SELECT count(*) FROM notified) >= 0`

// FireSchedules fires due schedules in one transaction of two statements
// (lock the due rows; fire them all): a crash before commit leaves every tick
// due, a commit leaves every tick done.
func (s *Store) FireSchedules(ctx context.Context, p service.FireParams) (int, error) {
	var processed int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, dueSchedulesSQL, pgx.NamedArgs{"now": p.Now, "limit": p.Limit})
		due, err := pgx.CollectRows(rows, pgx.RowToStructByName[dueScheduleRow])
		if err != nil {
			return fmt.Errorf("lock due schedules: %w", err)
		}
		processed = len(due)
		if len(due) == 0 {
			return nil
		}
		ids := make([]int64, len(due))
		nexts := make([]*time.Time, len(due))
		lastFires := make([]*time.Time, len(due))
		var tickSchedules []int64
		var ticks []time.Time
		var labels []string
		for i, d := range due {
			plan := p.Plan(service.DueSchedule{Schedule: d.toSchedule(), LastJobUnfinished: d.LastJobUnfinished})
			ids[i], nexts[i] = d.ID, optTime(plan.Next)
			if len(plan.Ticks) > 0 {
				lastFires[i] = &plan.Ticks[len(plan.Ticks)-1]
			}
			for _, t := range plan.Ticks {
				tickSchedules = append(tickSchedules, d.ID)
				ticks = append(ticks, t)
				labels = append(labels, t.UTC().Format(time.RFC3339Nano))
			}
		}
		var advanced int
		if err := tx.QueryRow(ctx, fireSchedulesSQL, pgx.NamedArgs{
			"tick_schedules": tickSchedules, "ticks": ticks, "labels": labels,
			"ids": ids, "nexts": nexts, "last_fires": lastFires, "now": p.Now,
		}).Scan(&advanced); err != nil {
			return fmt.Errorf("fire %d schedules: %w", len(due), err)
		}
		if advanced != len(due) {
			return fmt.Errorf("fire schedules: advanced %d of %d locked schedules", advanced, len(due))
		}
		return nil
	})
	return processed, err
}

// NextScheduleFire returns the earliest next tick of an unpaused schedule.
func (s *Store) NextScheduleFire(ctx context.Context) (time.Time, error) {
	var next *time.Time
	err := s.pool.QueryRow(ctx, `SELECT min(next_fire_at) FROM queued_schedules WHERE NOT paused AND next_fire_at IS NOT NULL`).Scan(&next)
	if err != nil {
		return time.Time{}, fmt.Errorf("next schedule tick: %w", err)
	}
	return deref(next), nil
}

// triggerScheduleSQL enqueues a schedule's job outside its ticks, records it
// as the schedule's latest job, and notifies the queue. The unique key names
// the trigger time, so a trigger never collides with a tick.
const triggerScheduleSQL = `
WITH s AS (
    SELECT * FROM queued_schedules WHERE name = @name FOR UPDATE
), ins AS (
    INSERT INTO queued_jobs (queue, name, payload, metadata, priority, state, max_attempts,
                             backoff, unique_key, run_at, created_at)
    SELECT s.queue, s.job_name, s.payload,
           s.metadata || jsonb_build_object('queued.schedule', s.name, 'queued.trigger', @label::text),
           s.priority, 'available', s.max_attempts, s.backoff,
           'schedule:' || s.name || ':trigger:' || @label::text, @now, @now
    FROM s
    RETURNING id, queue
), upd AS (
    UPDATE queued_schedules q SET last_job_id = ins.id FROM ins WHERE q.name = @name
), notified AS (
    SELECT pg_notify('` + channelAvailable + `', queue) FROM ins
)
SELECT id FROM ins WHERE (SELECT count(*) FROM notified) >= 0`

// TriggerSchedule enqueues a schedule's job now.
func (s *Store) TriggerSchedule(ctx context.Context, name string, now time.Time) (int64, error) {
	var id int64
	err := s.pool.QueryRow(ctx, triggerScheduleSQL, pgx.NamedArgs{
		"name": name, "now": now, "label": now.UTC().Format(time.RFC3339Nano),
	}).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("trigger schedule %q: %w", name, interpretError(err))
	}
	return id, nil
}

// DeleteFiredTicks forgets up to limit fired ticks recorded before the
// cutoff.
func (s *Store) DeleteFiredTicks(ctx context.Context, before time.Time, limit int) (int, error) {
	tag, err := s.pool.Exec(ctx, `
DELETE FROM queued_schedule_fires WHERE ctid IN (
    SELECT ctid FROM queued_schedule_fires WHERE fired_at < @before LIMIT @limit)`,
		pgx.NamedArgs{"before": before, "limit": limit})
	if err != nil {
		return 0, fmt.Errorf("delete fired ticks: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

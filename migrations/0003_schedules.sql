-- Schedules: named, repeating jobs. Each row carries its job template and the
-- next tick it will fire (next_fire_at); firing a tick locks the row, enqueues
-- the job, records the tick in queued_schedule_fires and advances next_fire_at,
-- all in one transaction.
CREATE TABLE queued_schedules (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Upserts are idempotent by name.
    name               text        NOT NULL UNIQUE,
    spec               text        NOT NULL,
    time_zone          text        NOT NULL DEFAULT 'UTC',
    queue              text        NOT NULL,
    job_name           text        NOT NULL,
    payload            bytea       NOT NULL DEFAULT ''::bytea,
    metadata           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    priority           integer     NOT NULL DEFAULT 0,
    max_attempts       integer     NOT NULL,
    backoff            jsonb       NOT NULL DEFAULT '{}'::jsonb,
    start_at           timestamptz,
    end_at             timestamptz,
    paused             boolean     NOT NULL DEFAULT false,
    catch_up           text        NOT NULL,
    catch_up_window_ms bigint      NOT NULL DEFAULT 0,
    overlap            text        NOT NULL,
    -- NULL: no further tick (past end_at).
    next_fire_at       timestamptz,
    last_fire_at       timestamptz,
    -- The job of the latest tick or trigger; overlap = 'skip' looks at it.
    -- Not a foreign key: finished jobs are deleted after their retention.
    last_job_id        bigint,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    CONSTRAINT queued_schedules_catch_up_valid CHECK (catch_up IN ('skip', 'one', 'all')),
    CONSTRAINT queued_schedules_overlap_valid CHECK (overlap IN ('allow', 'skip')),
    CONSTRAINT queued_schedules_max_attempts_valid CHECK (max_attempts >= 1)
);

-- The scheduler: unpaused schedules by their next tick (the due ones to
-- fire, and the earliest one to sleep until).
CREATE INDEX queued_schedules_due ON queued_schedules (next_fire_at)
    WHERE NOT paused AND next_fire_at IS NOT NULL;

-- Fired ticks. The primary key is what makes a tick fire at most once: a
-- replica that fires a tick another already fired (after an edit recomputed
-- next_fire_at, or with a clock behind the others') inserts nothing and
-- enqueues nothing. Rows are forgotten after the retention period.
CREATE TABLE queued_schedule_fires (
    schedule_id bigint      NOT NULL REFERENCES queued_schedules (id) ON DELETE CASCADE,
    tick        timestamptz NOT NULL,
    fired_at    timestamptz NOT NULL,
    PRIMARY KEY (schedule_id, tick)
);

-- Forgetting old fired ticks.
CREATE INDEX queued_schedule_fires_fired_at ON queued_schedule_fires (fired_at);

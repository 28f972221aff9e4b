-- The job table. One row per job, live or finished. Finished rows stay for the
-- retention period; every index used by the hot path is partial, so finished
-- rows never enter the claim, sweep or promote paths however many there are.
CREATE TABLE queued_jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue            text        NOT NULL,
    name             text        NOT NULL,
    payload          bytea       NOT NULL DEFAULT ''::bytea,
    metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    priority         integer     NOT NULL DEFAULT 0,
    state            text        NOT NULL,
    attempt          integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL,
    backoff          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    unique_key       text,
    run_at           timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    lease_token      uuid,
    lease_expires_at timestamptz,
    leased_by        text,
    result           bytea,
    progress         bytea,
    errors           jsonb       NOT NULL DEFAULT '[]'::jsonb,
    CONSTRAINT queued_jobs_state_valid CHECK (state IN
        ('scheduled', 'available', 'running', 'waiting_children', 'completed', 'failed', 'cancelled')),
    CONSTRAINT queued_jobs_attempts_valid CHECK (max_attempts >= 1 AND attempt >= 0),
    -- A running job always has a lease; nothing else has one. Ack/nack match
    -- on (id, lease_token, state = 'running').
    CONSTRAINT queued_jobs_lease_iff_running CHECK
        ((state = 'running') = (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL))
);

-- The claim: available jobs of a queue in (priority, run_at, id) order. Only
-- available rows are in it, so it stays as small as the backlog.
CREATE INDEX queued_jobs_claim ON queued_jobs (queue, priority, run_at, id)
    WHERE state = 'available';

-- The promoter: the next scheduled (delayed or backing-off) jobs by run_at.
CREATE INDEX queued_jobs_scheduled ON queued_jobs (run_at)
    WHERE state = 'scheduled';

-- The sweeper: running jobs whose lease expired.
CREATE INDEX queued_jobs_lease_expiry ON queued_jobs (lease_expires_at)
    WHERE state = 'running';

-- The cleaner: finished jobs past retention.
CREATE INDEX queued_jobs_finished ON queued_jobs (finished_at)
    WHERE state IN ('completed', 'failed', 'cancelled');

-- Deduplication: at most one unfinished job per (queue, unique_key). Finished
-- jobs drop out of the index, so the key can be used again.
CREATE UNIQUE INDEX queued_jobs_unique_key ON queued_jobs (queue, unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'available', 'running', 'waiting_children');

-- Every job is updated a few times in its short life: vacuum the table far
-- more eagerly than the default 20% of its size, and leave room on each page
-- so that updates stay on the page (HOT) where the indexes allow.
ALTER TABLE queued_jobs SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0,
    fillfactor = 80
);

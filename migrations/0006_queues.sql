-- Per-queue controls: pause and rate limit. Queues themselves stay implicit
-- (a queue exists when a job names it); a row here exists only once an
-- operator paused or limited the queue, so queues nobody configured cost
-- nothing: the claim path never reads this table for them.
CREATE TABLE queued_queues (
    queue       text PRIMARY KEY,
    -- While true, no replica hands out this queue's jobs. Replicas keep the
    -- set of paused queues in memory, refreshed by NOTIFY queued_queues.
    paused      boolean     NOT NULL DEFAULT false,
    -- Rate limit: at most rate_max jobs started per rate_per_ms, as a token
    -- bucket holding at most rate_max tokens and refilled at
    -- rate_max / rate_per_ms tokens per millisecond. rate_max = 0: no limit.
    rate_max    integer     NOT NULL DEFAULT 0,
    rate_per_ms bigint      NOT NULL DEFAULT 0,
    -- The bucket: tokens left at refilled_at. Claims of a limited queue lock
    -- this row, refill it up to their @now (never moving refilled_at back,
    -- so a replica whose clock is behind refills nothing twice) and debit
    -- the jobs they claimed, in the claim's own statement.
    tokens      double precision NOT NULL DEFAULT 0,
    refilled_at timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    CONSTRAINT queued_queues_rate_valid CHECK
        (rate_max >= 0 AND (rate_max = 0 OR rate_per_ms >= 1)),
    CONSTRAINT queued_queues_tokens_valid CHECK (tokens >= 0)
);

-- A limited queue's row is updated by every claim of that queue: leave room
-- on the page so those updates stay HOT (the only index is the primary key,
-- which they do not change), and vacuum it eagerly.
ALTER TABLE queued_queues SET (
    fillfactor = 50,
    autovacuum_vacuum_threshold = 100,
    autovacuum_vacuum_scale_factor = 0
);

-- Metrics count live jobs per queue and state every few seconds, one partial
-- index per live state, so the count costs what the live rows cost and never
-- touches the finished ones. Every other live state already has an index from
-- 0001; waiting_children (flow parents) gets this one. It stays empty until
-- flows are used.
CREATE INDEX IF NOT EXISTS queued_jobs_waiting ON queued_jobs (queue)
    WHERE state = 'waiting_children';

-- One job per transaction: the ceiling for producers that do not batch.
INSERT INTO queued_jobs (queue, name, payload, state, max_attempts, run_at, created_at)
VALUES ('ceiling', 'noop', decode(repeat('00', 100), 'hex'), 'available', 5, now(), now());

-- 1000 jobs in one multi-row INSERT (one transaction): the producer ceiling.
INSERT INTO queued_jobs (queue, name, payload, state, max_attempts, run_at, created_at)
SELECT 'ceiling', 'noop', decode(repeat('00', 100), 'hex'), 'available', 5, now(), now()
FROM generate_series(1, 1000);

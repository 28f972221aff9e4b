-- End to end with plain SQL, 100 job(s) per statement, each statement its own
-- transaction as in queued: insert, claim (SKIP LOCKED), ack. The claim and
-- ack are the same shape as queued's, on the same table and indexes.
INSERT INTO queued_jobs (queue, name, payload, state, max_attempts, run_at, created_at)
SELECT 'ceiling', 'noop', decode(repeat('00', 100), 'hex'), 'available', 5, now(), now()
FROM generate_series(1, 100);
WITH picked AS (
    SELECT id FROM queued_jobs
    WHERE state = 'available' AND queue = 'ceiling'
    ORDER BY priority, run_at, id
    LIMIT 100
    FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE queued_jobs j
    SET state = 'running', attempt = j.attempt + 1, lease_token = gen_random_uuid(),
        lease_expires_at = now() + interval '30 seconds', leased_by = 'pgbench', started_at = now()
    FROM picked WHERE j.id = picked.id
    RETURNING j.id
)
SELECT coalesce(array_agg(id), '{}')::text AS ids FROM upd
\gset
UPDATE queued_jobs
SET state = 'completed', finished_at = now(), lease_token = NULL, lease_expires_at = NULL
WHERE id = ANY(:ids::bigint[]) AND state = 'running';

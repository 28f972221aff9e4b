-- The admin listing (ListJobs, the dashboard) pages through finished jobs of
-- one queue and state by id, and the queue overview counts them (capped).
-- Finished rows are where a table's millions are: without this index,
-- "failed jobs of queue q, newest first" walks the primary key backwards
-- through every row of other queues and states (95 ms for an empty page on
-- 1M rows; a parallel scan of the table, 150 ms, for a rare queue); with it,
-- a page is one index range (under 0.1 ms). Live states need nothing new:
-- the claim and scheduled indexes already bound those reads by the backlog.
--
-- It is partial, so the hot path pays for it once per job, in the update
-- that finishes the job (already a non-HOT update, since state is in every
-- partial index's predicate), and never on insert, claim or retry.
CREATE INDEX IF NOT EXISTS queued_jobs_finished_by_queue ON queued_jobs (queue, state, id)
    WHERE state IN ('completed', 'failed', 'cancelled');

package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/queued-dev/queued/service"
)

// claimSetSQL leases the picked jobs: each picked row gets the owner and
// expiry of its slot, a fresh lease token, and one more attempt. Rows are
// locked by the pick with SKIP LOCKED, so concurrent claimers (other
// dispatchers, other replicas) never take the same job and never wait.
const claimSetSQL = `
UPDATE queued_jobs j
SET state = 'running',
    attempt = j.attempt + 1,
    lease_token = gen_random_uuid(),
    lease_expires_at = (@expires::timestamptz[])[s.slot],
    leased_by = (@owners::text[])[s.slot],
    started_at = @now
FROM slotted s
WHERE j.id = s.id
RETURNING s.slot, ` + jobColumns + `, ` + childrenColumn

// claimOneQueueSQL picks from one queue. The equality on queue lets the scan
// walk the partial claim index in (priority, run_at, id) order and stop
// after @limit rows, however deep the backlog.
const claimOneQueueSQL = `
WITH picked AS (
    SELECT id FROM queued_jobs
    WHERE state = 'available' AND queue = @queue
    ORDER BY priority, run_at, id
    LIMIT @limit
    FOR UPDATE SKIP LOCKED
), slotted AS (
    SELECT id, row_number() OVER () AS slot FROM picked
)` + claimSetSQL

// claimManyQueuesSQL picks from several queues: the first @limit rows of
// each queue by index order, then the best @limit of those. (queue = ANY
// would make PostgreSQL sort the whole backlog of every queue.) Rows locked
// but not picked are unlocked when the statement's transaction ends.
const claimManyQueuesSQL = `
WITH candidates AS (
    SELECT c.id, c.priority, c.run_at
    FROM unnest(@queues::text[]) AS q(name)
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at FROM queued_jobs
        WHERE state = 'available' AND queue = q.name
        ORDER BY priority, run_at, id
        LIMIT @limit
        FOR UPDATE SKIP LOCKED
    ) c
), picked AS (
    SELECT id FROM candidates ORDER BY priority, run_at, id LIMIT @limit
), slotted AS (
    SELECT id, row_number() OVER () AS slot FROM picked
)` + claimSetSQL

type claimedRow struct {
	Slot     int64        `db:"slot"`
	Children []childEntry `db:"children"`
	jobRow
}

// ClaimJobs leases up to len(p.Owners) jobs in one statement.
func (s *Store) ClaimJobs(ctx context.Context, p service.ClaimParams) ([]service.ClaimedJob, error) {
	args := pgx.NamedArgs{
		"limit":   len(p.Owners),
		"owners":  p.Owners,
		"expires": p.ExpiresAt,
		"now":     p.Now,
	}
	query := claimManyQueuesSQL
	if len(p.Queues) == 1 {
		query = claimOneQueueSQL
		args["queue"] = p.Queues[0]
	} else {
		args["queues"] = p.Queues
	}
	rows, _ := s.pool.Query(ctx, query, args)
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[claimedRow])
	if err != nil {
		return nil, fmt.Errorf("claim jobs from %v: %w", p.Queues, interpretError(err))
	}
	return claimedJobs(rs), nil
}

// claimedJobs turns the rows of a claim into leases, each with the owner
// slot (0-based) it was claimed for.
func claimedJobs(rs []claimedRow) []service.ClaimedJob {
	out := make([]service.ClaimedJob, len(rs))
	for i, r := range rs {
		job := r.toJob()
		out[i] = service.ClaimedJob{
			Slot:  int(r.Slot) - 1,
			Lease: service.Lease{Job: job, Token: deref(r.LeaseToken), ExpiresAt: job.LeaseExpiresAt, Children: childOutcomes(r.Children)},
		}
	}
	return out
}

// leaseRefArrays splits refs into the parallel arrays the SQL unnests.
func leaseRefArrays(refs []service.LeaseRef) ([]int64, []string) {
	ids, tokens := make([]int64, len(refs)), make([]string, len(refs))
	for i, r := range refs {
		ids[i], tokens[i] = r.JobID, r.Token
	}
	return ids, tokens
}

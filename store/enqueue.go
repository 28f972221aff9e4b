package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/queued-dev/queued/service"
)

// insertJobsSQL inserts a batch from parallel arrays in input order, skips
// rows whose unique key matches an unfinished job, and notifies each queue
// that received an available job, all in one statement. Ids come from an
// identity column and are drawn in input order, which is how results are
// matched back to inputs (see InsertJobs).
const insertJobsSQL = `
WITH ins AS (
    INSERT INTO queued_jobs (queue, name, payload, metadata, priority, state, max_attempts,
                             backoff, unique_key, run_at, created_at)
    SELECT t.queue, t.name, t.payload, t.metadata::jsonb, t.priority, t.state, t.max_attempts,
           t.backoff::jsonb, t.unique_key, t.run_at, t.created_at
    FROM unnest(@queues::text[], @names::text[], @payloads::bytea[], @metadata::text[],
                @priorities::int[], @states::text[], @max_attempts::int[], @backoffs::text[],
                @unique_keys::text[], @run_ats::timestamptz[], @created_ats::timestamptz[])
         WITH ORDINALITY AS t(queue, name, payload, metadata, priority, state, max_attempts,
                              backoff, unique_key, run_at, created_at, ord)
    ORDER BY t.ord
    ON CONFLICT (queue, unique_key)
        WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'available', 'running', 'waiting_children')
        DO NOTHING
    RETURNING id, queue, unique_key, state
), notified AS (
    SELECT pg_notify('` + channelAvailable + `', q.queue)
    FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') q
)
SELECT id, queue, unique_key, state FROM ins
WHERE (SELECT count(*) FROM notified) >= 0
ORDER BY id`

// existingByKeySQL finds the newest job holding each (queue, unique_key).
// The job that blocked an insert was unfinished at that moment; it may have
// finished since, which does not change that the enqueue was a duplicate.
const existingByKeySQL = `
SELECT k.ord, j.id, j.state
FROM unnest(@queues::text[], @keys::text[]) WITH ORDINALITY AS k(queue, key, ord)
CROSS JOIN LATERAL (
    SELECT id, state FROM queued_jobs
    WHERE queue = k.queue AND unique_key = k.key
    ORDER BY id DESC LIMIT 1
) j`

type insertedRow struct {
	ID        int64   `db:"id"`
	Queue     string  `db:"queue"`
	UniqueKey *string `db:"unique_key"`
	State     string  `db:"state"`
}

// encodeJobJSON renders a job's metadata and backoff as the JSON text its
// jsonb columns take from the insert arrays.
func encodeJobJSON(metadata map[string]string, backoff service.Backoff) (string, string, error) {
	meta := []byte("{}")
	if metadata != nil {
		var err error
		if meta, err = json.Marshal(metadata); err != nil {
			return "", "", fmt.Errorf("encode metadata: %w", err)
		}
	}
	b, err := json.Marshal(backoff)
	if err != nil {
		return "", "", fmt.Errorf("encode backoff: %w", err)
	}
	return string(meta), string(b), nil
}

// InsertJobs inserts jobs in one statement (and a second, read-only one to
// name the jobs that duplicates point at).
func (s *Store) InsertJobs(ctx context.Context, jobs []service.NewJob) ([]service.EnqueuedJob, error) {
	n := len(jobs)
	args := struct {
		queues, names, metadata, states, backoffs []string
		payloads                                  [][]byte
		priorities, maxAttempts                   []int32
		uniqueKeys                                []*string
		runAts, createdAts                        []time.Time
	}{
		queues: make([]string, n), names: make([]string, n), metadata: make([]string, n),
		states: make([]string, n), backoffs: make([]string, n), payloads: make([][]byte, n),
		priorities: make([]int32, n), maxAttempts: make([]int32, n), uniqueKeys: make([]*string, n),
		runAts: make([]time.Time, n), createdAts: make([]time.Time, n),
	}
	for i, j := range jobs {
		meta, backoff, err := encodeJobJSON(j.Metadata, j.Backoff)
		if err != nil {
			return nil, err
		}
		args.queues[i], args.names[i], args.metadata[i] = j.Queue, j.Name, meta
		args.states[i], args.backoffs[i] = string(j.State), backoff
		args.payloads[i] = j.Payload
		if args.payloads[i] == nil {
			args.payloads[i] = []byte{}
		}
		args.priorities[i], args.maxAttempts[i] = j.Priority, j.MaxAttempts
		if j.UniqueKey != "" {
			args.uniqueKeys[i] = &j.UniqueKey
		}
		args.runAts[i], args.createdAts[i] = j.RunAt, j.CreatedAt
	}
	rows, _ := s.pool.Query(ctx, insertJobsSQL, pgx.NamedArgs{
		"queues": args.queues, "names": args.names, "payloads": args.payloads, "metadata": args.metadata,
		"priorities": args.priorities, "states": args.states, "max_attempts": args.maxAttempts,
		"backoffs": args.backoffs, "unique_keys": args.uniqueKeys, "run_ats": args.runAts,
		"created_ats": args.createdAts,
	})
	inserted, err := pgx.CollectRows(rows, pgx.RowToStructByName[insertedRow])
	if err != nil {
		return nil, fmt.Errorf("insert %d jobs: %w", n, interpretError(err))
	}

	// Match results to inputs. Identity values are drawn in input order, so
	// the inserted rows sorted by id are the non-duplicate inputs in order.
	// An input with a unique key is a duplicate when the next inserted row
	// is not its own (it was skipped by ON CONFLICT).
	out := make([]service.EnqueuedJob, n)
	type key struct{ queue, key string }
	claimedKeys := make(map[key]bool)
	var dupIdx []int
	next := 0
	for i, j := range jobs {
		if j.UniqueKey != "" {
			k := key{j.Queue, j.UniqueKey}
			if claimedKeys[k] || next >= len(inserted) || deref(inserted[next].UniqueKey) != j.UniqueKey || inserted[next].Queue != j.Queue {
				dupIdx = append(dupIdx, i)
				continue
			}
			claimedKeys[k] = true
		}
		if next >= len(inserted) {
			return nil, fmt.Errorf("insert %d jobs: %d rows came back, fewer than expected", n, len(inserted))
		}
		r := inserted[next]
		next++
		out[i] = service.EnqueuedJob{ID: r.ID, State: service.JobState(r.State)}
	}
	if len(dupIdx) == 0 {
		return out, nil
	}

	qs, ks := make([]string, len(dupIdx)), make([]string, len(dupIdx))
	for k, i := range dupIdx {
		qs[k], ks[k] = jobs[i].Queue, jobs[i].UniqueKey
	}
	rows, _ = s.pool.Query(ctx, existingByKeySQL, pgx.NamedArgs{"queues": qs, "keys": ks})
	found := 0
	var ord, id int64
	var state string
	_, err = pgx.ForEachRow(rows, []any{&ord, &id, &state}, func() error {
		out[dupIdx[ord-1]] = service.EnqueuedJob{ID: id, Duplicate: true, State: service.JobState(state)}
		found++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look up %d duplicate jobs: %w", len(dupIdx), err)
	}
	if found != len(dupIdx) {
		return nil, fmt.Errorf("look up duplicate jobs: %d of %d were removed meanwhile", len(dupIdx)-found, len(dupIdx))
	}
	return out, nil
}

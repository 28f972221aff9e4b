package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/queued-dev/queued/service"
)

// reserveIDsSQL draws ids for a flow from the table's identity sequence, so
// that the whole tree, parent links included, is written by one INSERT.
const reserveIDsSQL = `SELECT nextval(pg_get_serial_sequence('queued_jobs', 'id')) FROM generate_series(1, @n::int)`

// insertFlowSQL inserts flow rows with the ids reserved for them, and
// notifies each queue that received an available job, in one statement.
const insertFlowSQL = `
WITH ins AS (
    INSERT INTO queued_jobs AS j (id, queue, name, payload, metadata, priority, state, max_attempts,
                                  backoff, run_at, created_at, parent_id, flow_id, child_name,
                                  child_policy, child_count, pending_children, children_deadline)
    OVERRIDING SYSTEM VALUE
    SELECT t.id, t.queue, t.name, t.payload, t.metadata::jsonb, t.priority, t.state, t.max_attempts,
           t.backoff::jsonb, t.run_at, t.created_at, t.parent_id, t.flow_id, t.child_name,
           t.child_policy, t.child_count, t.child_count, t.children_deadline
    FROM unnest(@ids::bigint[], @queues::text[], @names::text[], @payloads::bytea[], @metadata::text[],
                @priorities::int[], @states::text[], @max_attempts::int[], @backoffs::text[],
                @run_ats::timestamptz[], @created_ats::timestamptz[], @parent_ids::bigint[],
                @flow_ids::bigint[], @child_names::text[], @child_policies::text[],
                @child_counts::int[], @deadlines::timestamptz[])
         AS t(id, queue, name, payload, metadata, priority, state, max_attempts, backoff, run_at,
              created_at, parent_id, flow_id, child_name, child_policy, child_count, children_deadline)
    RETURNING ` + jobColumns + `
), notified AS (
    SELECT pg_notify('` + channelAvailable + `', q.queue)
    FROM (SELECT DISTINCT queue FROM ins WHERE state = 'available') q
)
SELECT * FROM ins WHERE (SELECT count(*) FROM notified) >= 0 ORDER BY id`

// InsertFlows inserts flows in one transaction.
func (s *Store) InsertFlows(ctx context.Context, flows [][]service.NewFlowJob) ([][]service.Job, error) {
	var out [][]service.Job
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		out, err = insertFlows(ctx, tx, flows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("insert %d flows: %w", len(flows), interpretError(err))
	}
	return out, nil
}

// insertFlows writes flows in tx. Ids are drawn in ascending order and given
// out in pre-order, so every parent's id is below its children's (the lock
// order of store/flow_settle.go relies on it) and each flow's root, whose id
// is the flow's id, comes first.
func insertFlows(ctx context.Context, tx pgx.Tx, flows [][]service.NewFlowJob) ([][]service.Job, error) {
	n := 0
	for _, f := range flows {
		n += len(f)
	}
	rows, _ := tx.Query(ctx, reserveIDsSQL, pgx.NamedArgs{"n": n})
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("reserve %d ids: %w", n, err)
	}
	slices.Sort(ids)
	a := struct {
		ids, flowIDs, parentIDs                   []*int64
		queues, names, metadata, states, backoffs []string
		childNames, policies                      []*string
		payloads                                  [][]byte
		priorities, maxAttempts, childCounts      []int32
		runAts, createdAts                        []time.Time
		deadlines                                 []*time.Time
	}{}
	next := 0
	for _, f := range flows {
		base := next
		for _, j := range f {
			id := ids[next]
			next++
			meta, backoff, err := encodeJobJSON(j.Metadata, j.Backoff)
			if err != nil {
				return nil, err
			}
			flowID := ids[base]
			var parent *int64
			if j.Parent >= 0 {
				parent = &ids[base+j.Parent]
			}
			payload := j.Payload
			if payload == nil {
				payload = []byte{}
			}
			a.ids, a.flowIDs, a.parentIDs = append(a.ids, &id), append(a.flowIDs, &flowID), append(a.parentIDs, parent)
			a.queues, a.names, a.metadata = append(a.queues, j.Queue), append(a.names, j.Name), append(a.metadata, meta)
			a.states, a.backoffs = append(a.states, string(j.State)), append(a.backoffs, backoff)
			a.childNames, a.policies = append(a.childNames, nilIfEmpty(j.ChildName)), append(a.policies, nilIfEmpty(string(j.Policy)))
			a.payloads, a.priorities, a.maxAttempts = append(a.payloads, payload), append(a.priorities, j.Priority), append(a.maxAttempts, j.MaxAttempts)
			a.childCounts, a.runAts, a.createdAts = append(a.childCounts, j.ChildCount), append(a.runAts, j.RunAt), append(a.createdAts, j.CreatedAt)
			var deadline *time.Time
			if !j.ChildrenDeadline.IsZero() {
				deadline = &j.ChildrenDeadline
			}
			a.deadlines = append(a.deadlines, deadline)
		}
	}
	rows, _ = tx.Query(ctx, insertFlowSQL, pgx.NamedArgs{
		"ids": a.ids, "queues": a.queues, "names": a.names, "payloads": a.payloads, "metadata": a.metadata,
		"priorities": a.priorities, "states": a.states, "max_attempts": a.maxAttempts, "backoffs": a.backoffs,
		"run_ats": a.runAts, "created_ats": a.createdAts, "parent_ids": a.parentIDs, "flow_ids": a.flowIDs,
		"child_names": a.childNames, "child_policies": a.policies, "child_counts": a.childCounts,
		"deadlines": a.deadlines,
	})
	jobs, err := collectJobs(rows)
	if err != nil {
		return nil, fmt.Errorf("insert %d flow jobs: %w", n, err)
	}
	if len(jobs) != n {
		return nil, fmt.Errorf("insert flow jobs: %d rows came back, want %d", len(jobs), n)
	}
	out := make([][]service.Job, len(flows))
	for i, f := range flows {
		out[i], jobs = jobs[:len(f):len(f)], jobs[len(f):]
	}
	return out, nil
}

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// CompleteThen acks one lease and inserts continuation flows in one
// transaction. The ack is the same statement as a coalesced ack (so a flow
// child acked this way releases its parent too); when it matches no lease,
// the transaction rolls back and no continuation exists.
func (s *Store) CompleteThen(ctx context.Context, ack service.Completion, then [][]service.NewFlowJob, now time.Time) ([]int64, error) {
	var roots []int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, completeSQL, pgx.NamedArgs{
			"ids": []int64{ack.JobID}, "tokens": []string{ack.Token}, "results": [][]byte{ack.Result}, "now": now,
		})
		done, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		if len(done) == 0 {
			return s.leaseLostOrNotFound(ctx, tx, ack.JobID)
		}
		flows, err := insertFlows(ctx, tx, then)
		if err != nil {
			return err
		}
		roots = make([]int64, len(flows))
		for i, f := range flows {
			roots[i] = f[0].ID
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("complete job %d with %d continuations: %w", ack.JobID, len(then), interpretError(err))
	}
	return roots, nil
}

// getFlowSQL returns the whole flow of a job, parents before children.
const getFlowSQL = `
SELECT ` + jobColumns + ` FROM queued_jobs j
WHERE j.flow_id = (SELECT flow_id FROM queued_jobs WHERE id = @id)
ORDER BY j.id`

// GetFlow returns the jobs of the flow that job id belongs to.
func (s *Store) GetFlow(ctx context.Context, id int64) ([]service.Job, error) {
	rows, _ := s.pool.Query(ctx, getFlowSQL, pgx.NamedArgs{"id": id})
	jobs, err := collectJobs(rows)
	if err != nil {
		return nil, fmt.Errorf("get flow of job %d: %w", id, err)
	}
	if len(jobs) == 0 {
		return nil, fmt.Errorf("job %d or its flow: %w", id, service.ErrNotFound)
	}
	return jobs, nil
}

// childrenColumn is what a leased flow parent gets to see of its children
// (result, last error), read by the claim statement itself, so a parent is
// never handed out without them. For other jobs the CASE skips the lookup.
const childrenColumn = `CASE WHEN j.child_count > 0 THEN (
    SELECT jsonb_agg(jsonb_build_object(
        'id', c.id, 'name', coalesce(c.child_name, ''), 'policy', coalesce(c.child_policy, ''),
        'state', c.state, 'result', encode(c.result, 'base64'),
        'error', coalesce(c.errors -> -1 ->> 'error', '')) ORDER BY c.id)
    FROM queued_jobs c WHERE c.parent_id = j.id
) END AS children`

// childEntry is one element of childrenColumn.
type childEntry struct {
	ID     int64   `json:"id"`
	Name   string  `json:"name"`
	Policy string  `json:"policy"`
	State  string  `json:"state"`
	Result *[]byte `json:"result"` // base64 in JSON, as encoding/json reads []byte
	Error  string  `json:"error"`
}

func childOutcomes(entries []childEntry) []service.ChildOutcome {
	if entries == nil {
		return nil
	}
	out := make([]service.ChildOutcome, len(entries))
	for i, c := range entries {
		o := service.ChildOutcome{JobID: c.ID, Name: c.Name, State: service.JobState(c.State), Policy: service.ChildPolicy(c.Policy)}
		if c.Result != nil {
			o.Result = *c.Result
		}
		if o.State == service.StateFailed || o.State == service.StateCancelled {
			o.Error = c.Error
			if o.Error == "" {
				o.Error = c.State
			}
		}
		out[i] = o
	}
	return out
}

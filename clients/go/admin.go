package queued

import (
	"context"
	"fmt"
	"iter"
	"time"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
)

// JobFilter selects jobs for ListJobs. Zero fields match every job.
type JobFilter struct {
	Queue  string
	States []State
	Name   string
	// OldestFirst lists by ascending id; the default is newest first.
	OldestFirst bool
	// Limit is the page size, 1..500; 0 means the server default (50).
	Limit int
	// IncludePayload also returns payload, result and progress.
	IncludePayload bool
}

// JobPage is one page of ListJobs.
type JobPage struct {
	Jobs []*Job
	// NextPageToken continues the listing with the same filter; empty on
	// the last page.
	NextPageToken string
}

var stateToProto = func() map[State]queuedv1.JobState {
	m := make(map[State]queuedv1.JobState, len(stateFromProto))
	for k, v := range stateFromProto {
		m[v] = k
	}
	return m
}()

// ListJobs returns one page of jobs matching f, after pageToken (empty for
// the first page). Pages follow job ids, so jobs enqueued while a caller
// pages never make it see a job twice or miss one.
func (c *Client) ListJobs(ctx context.Context, f JobFilter, pageToken string) (JobPage, error) {
	req := &queuedv1.ListJobsRequest{Queue: f.Queue, Name: f.Name, Limit: int32(f.Limit), PageToken: pageToken, IncludePayload: f.IncludePayload}
	if f.OldestFirst {
		req.Order = queuedv1.ListJobsRequest_OLDEST_FIRST
	}
	for _, st := range f.States {
		p, ok := stateToProto[st]
		if !ok {
			return JobPage{}, fmt.Errorf("list jobs: unknown state %q", st)
		}
		req.States = append(req.States, p)
	}
	resp, err := c.admin.ListJobs(ctx, req)
	if err != nil {
		return JobPage{}, fmt.Errorf("list jobs: %w", err)
	}
	page := JobPage{NextPageToken: resp.GetNextPageToken(), Jobs: make([]*Job, len(resp.GetJobs()))}
	for i, j := range resp.GetJobs() {
		page.Jobs[i] = jobFromProto(j)
	}
	return page, nil
}

// AllJobs iterates over every job matching f, fetching pages as it goes.
// An error ends the iteration after it is yielded.
func (c *Client) AllJobs(ctx context.Context, f JobFilter) iter.Seq2[*Job, error] {
	return func(yield func(*Job, error) bool) {
		token := ""
		for {
			page, err := c.ListJobs(ctx, f, token)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, j := range page.Jobs {
				if !yield(j, nil) {
					return
				}
			}
			if page.NextPageToken == "" {
				return
			}
			token = page.NextPageToken
		}
	}
}

// RetryJob makes a failed or cancelled job available again with its
// attempt count reset to 0 (max attempts and past errors are kept), like
// BullMQ's job.retry(). A job in another state is FAILED_PRECONDITION; a
// job whose unique key an unfinished job now holds is ALREADY_EXISTS.
func (c *Client) RetryJob(ctx context.Context, id int64) (*Job, error) {
	resp, err := c.admin.RetryJob(ctx, &queuedv1.RetryJobRequest{Id: id})
	if err != nil {
		return nil, fmt.Errorf("retry job %d: %w", id, err)
	}
	return jobFromProto(resp.GetJob()), nil
}

// DeleteJob deletes a finished job now and returns the state it had. An
// unfinished job is FAILED_PRECONDITION: cancel it first.
func (c *Client) DeleteJob(ctx context.Context, id int64) (State, error) {
	resp, err := c.admin.DeleteJob(ctx, &queuedv1.DeleteJobRequest{Id: id})
	if err != nil {
		return "", fmt.Errorf("delete job %d: %w", id, err)
	}
	return toState(resp.GetState()), nil
}

// QueueInfo is one queue's jobs by state.
type QueueInfo struct {
	Name   string          `json:"name"`
	Counts map[State]int64 `json:"counts"`
	// FinishedCapped says a finished count stopped at the server's cap
	// (10,000): the true number is at least that.
	FinishedCapped bool `json:"finished_capped,omitempty"`
	// Lag is how long the oldest available job has waited; 0 when none.
	Lag time.Duration `json:"lag"`
}

// ListQueues returns every queue that holds jobs, by name.
func (c *Client) ListQueues(ctx context.Context) ([]QueueInfo, error) {
	resp, err := c.admin.ListQueues(ctx, &queuedv1.ListQueuesRequest{})
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	now := resp.GetNow().AsTime()
	out := make([]QueueInfo, len(resp.GetQueues()))
	for i, q := range resp.GetQueues() {
		out[i] = QueueInfo{Name: q.GetQueue(), FinishedCapped: q.GetFinishedCapped(), Counts: map[State]int64{
			StateScheduled: q.GetScheduled(), StateAvailable: q.GetAvailable(), StateRunning: q.GetRunning(),
			StateWaitingChildren: q.GetWaitingChildren(), StateCompleted: q.GetCompleted(),
			StateFailed: q.GetFailed(), StateCancelled: q.GetCancelled(),
		}}
		if q.GetOldestAvailableAt() != nil {
			out[i].Lag = max(0, now.Sub(q.GetOldestAvailableAt().AsTime()))
		}
	}
	return out, nil
}

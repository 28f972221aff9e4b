package service

import (
	"context"
	"encoding/base64"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Admin listing bounds.
const (
	// ListJobsLimitDefault is the page size when the caller names none.
	ListJobsLimitDefault = 50
	// ListJobsLimitMax bounds a page, so one call cannot read the table.
	ListJobsLimitMax = 500
	// FinishedCountCap bounds each finished count of ListQueues. Counting
	// stops there, so an overview of a table with millions of finished rows
	// reads at most this many index entries per queue and state.
	FinishedCountCap = 10_000
	// maxListStates bounds the states filter (there are only seven).
	maxListStates = 7
)

// AdminStore is the part of the Store port that the admin calls need.
type AdminStore interface {
	// ListJobs returns up to q.Limit jobs matching q's filter, after
	// q.AfterID in q's order (0: from the start), without payload, result
	// and progress unless q.IncludePayload.
	ListJobs(ctx context.Context, q JobQuery) ([]Job, error)
	// RetryJob makes a failed or cancelled job (outside a flow's children)
	// available at now with attempt 0, keeping its errors, and publishes
	// that its queue has work. It returns the job as it now is; a job in
	// another state is a *StateError and nothing changes.
	RetryJob(ctx context.Context, id int64, now time.Time) (Job, error)
	// DeleteJob deletes a finished job and returns the state it had; an
	// unfinished job is a *StateError and stays.
	DeleteJob(ctx context.Context, id int64) (JobState, error)
	// QueueOverviews counts every queue's jobs by state; finished states
	// are counted up to finishedCap each.
	QueueOverviews(ctx context.Context, finishedCap int) ([]QueueOverview, error)
}

// ListOrder is the order of a job listing.
type ListOrder string

// Listing orders.
const (
	// NewestFirst lists by descending id, the most recent enqueue first.
	NewestFirst ListOrder = "newest"
	// OldestFirst lists by ascending id.
	OldestFirst ListOrder = "oldest"
)

// JobFilter selects jobs for ListJobs. Zero fields match everything.
type JobFilter struct {
	Queue  string
	States []JobState
	Name   string
}

// ListJobsParams asks for one page of jobs.
type ListJobsParams struct {
	Filter JobFilter
	Order  ListOrder // "" means NewestFirst
	Limit  int       // 0 means ListJobsLimitDefault
	// PageToken is the NextPageToken of the previous page, "" for the first.
	PageToken      string
	IncludePayload bool
}

// JobPage is one page of a listing.
type JobPage struct {
	Jobs []Job
	// NextPageToken continues the listing; "" when this page is the last.
	NextPageToken string
}

// JobQuery is a resolved listing for the store: keyset pagination by id.
type JobQuery struct {
	Filter         JobFilter
	Order          ListOrder
	AfterID        int64 // exclusive; 0 means from the start in Order
	Limit          int
	IncludePayload bool
}

// QueueOverview is one queue's jobs by state, as the admin overview shows
// it.
type QueueOverview struct {
	Queue  string
	Counts map[JobState]int64
	// FinishedCapped says at least one finished count stopped at the cap.
	FinishedCapped bool
	// OldestAvailableAt is the run_at of the oldest available job; zero
	// when none is available. Now minus it is the queue's lag.
	OldestAvailableAt time.Time
}

// StateError means an operation needs the job in another state. It names
// the job's state, so the caller knows what to do instead.
type StateError struct {
	JobID int64
	State JobState
	// Op is what was refused, e.g. "retry"; Hint says what is allowed.
	Op   string
	Hint string
}

func (e *StateError) Error() string {
	return fmt.Sprintf("cannot %s job %d: it is %s; %s", e.Op, e.JobID, e.State, e.Hint)
}

// ListJobs returns one page of jobs. Pagination is by job id (keyset), so a
// page never repeats or skips a job because others were inserted or
// finished meanwhile: a job matching the filter throughout appears exactly
// once across the pages.
func (s *Service) ListJobs(ctx context.Context, p ListJobsParams) (JobPage, error) {
	q, err := resolveListJobs(p)
	if err != nil {
		return JobPage{}, err
	}
	// One extra row says whether there is a next page, so the last page
	// never ends with a token that leads to an empty page.
	q.Limit++
	jobs, err := s.store.ListJobs(ctx, q)
	if err != nil {
		return JobPage{}, err
	}
	page := JobPage{Jobs: jobs}
	if len(jobs) == q.Limit {
		page.Jobs = jobs[:len(jobs)-1]
		page.NextPageToken = encodePageToken(q, page.Jobs[len(page.Jobs)-1].ID)
	}
	return page, nil
}

func resolveListJobs(p ListJobsParams) (JobQuery, error) {
	q := JobQuery{Filter: p.Filter, Order: p.Order, Limit: p.Limit, IncludePayload: p.IncludePayload}
	switch q.Order {
	case "":
		q.Order = NewestFirst
	case NewestFirst, OldestFirst:
	default:
		return q, invalid("order", "must be %q or %q, got %q", NewestFirst, OldestFirst, q.Order)
	}
	switch {
	case q.Limit == 0:
		q.Limit = ListJobsLimitDefault
	case q.Limit < 0 || q.Limit > ListJobsLimitMax:
		return q, invalid("limit", "must be between 1 and %d, got %d", ListJobsLimitMax, q.Limit)
	}
	if len(q.Filter.Queue) > MaxNameLength {
		return q, invalid("queue", "must be at most %d bytes, got %d", MaxNameLength, len(q.Filter.Queue))
	}
	if len(q.Filter.Name) > MaxNameLength {
		return q, invalid("name", "must be at most %d bytes, got %d", MaxNameLength, len(q.Filter.Name))
	}
	if len(q.Filter.States) > maxListStates {
		return q, invalid("states", "at most %d states", maxListStates)
	}
	for i, st := range q.Filter.States {
		if !st.valid() {
			return q, invalid(fmt.Sprintf("states[%d]", i), "unknown state %q", st)
		}
	}
	// Sorted and unique, so the same filter always hashes the same.
	q.Filter.States = slices.Clone(q.Filter.States)
	slices.Sort(q.Filter.States)
	q.Filter.States = slices.Compact(q.Filter.States)
	if p.PageToken != "" {
		after, err := decodePageToken(p.PageToken, q)
		if err != nil {
			return q, err
		}
		q.AfterID = after
	}
	return q, nil
}

func (st JobState) valid() bool {
	switch st {
	case StateScheduled, StateAvailable, StateRunning, StateWaitingChildren,
		StateCompleted, StateFailed, StateCancelled:
		return true
	}
	return false
}

// A page token is "<last id>.<order>.<filter hash>" in URL-safe base64.
// The hash binds it to the filter it was made for: a token replayed with
// another filter would silently skip or repeat jobs, so it is refused.
func encodePageToken(q JobQuery, lastID int64) string {
	raw := fmt.Sprintf("%d.%s.%x", lastID, q.Order, filterHash(q.Filter))
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodePageToken(tok string, q JobQuery) (int64, error) {
	bad := func(reason string) (int64, error) { return 0, invalid("page_token", "%s", reason) }
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return bad("malformed: pass next_page_token unchanged")
	}
	parts := strings.Split(string(raw), ".")
	if len(parts) != 3 {
		return bad("malformed: pass next_page_token unchanged")
	}
	id, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || id <= 0 {
		return bad("malformed: pass next_page_token unchanged")
	}
	if ListOrder(parts[1]) != q.Order || parts[2] != fmt.Sprintf("%x", filterHash(q.Filter)) {
		return bad("was made for another filter or order: repeat the first request's filter and order")
	}
	return id, nil
}

func filterHash(f JobFilter) uint32 {
	h := fnv.New32a()
	fmt.Fprintf(h, "%q|%q|", f.Queue, f.Name)
	for _, st := range f.States {
		fmt.Fprintf(h, "%s,", st)
	}
	return h.Sum32()
}

// RetryJob makes a failed or cancelled job available again with a fresh
// set of attempts (BullMQ's job.retry()). The errors of its earlier
// attempts stay on the job.
func (s *Service) RetryJob(ctx context.Context, id int64) (Job, error) {
	if id <= 0 {
		return Job{}, invalid("id", "must be positive")
	}
	job, err := s.store.RetryJob(ctx, id, s.now())
	if err != nil {
		return Job{}, err
	}
	s.wakeQueue(job.Queue)
	return job, nil
}

// DeleteJob deletes a finished job now instead of at the end of its
// retention. Unfinished jobs are refused rather than cancelled on the way:
// deleting a running job would leave its worker acking a row that is gone,
// and a separate cancel makes the operator's intent explicit.
func (s *Service) DeleteJob(ctx context.Context, id int64) (JobState, error) {
	if id <= 0 {
		return "", invalid("id", "must be positive")
	}
	return s.store.DeleteJob(ctx, id)
}

// ListQueues returns every queue holding jobs, by name, with its counts by
// state (finished states counted up to FinishedCountCap), and the time the
// counts were taken at.
func (s *Service) ListQueues(ctx context.Context) ([]QueueOverview, time.Time, error) {
	now := s.now()
	out, err := s.store.QueueOverviews(ctx, FinishedCountCap)
	if err != nil {
		return nil, time.Time{}, err
	}
	return out, now, nil
}

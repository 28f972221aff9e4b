package queued

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
)

// EventKind says what happened to a job in a WatchEvent.
type EventKind string

// Event kinds. A job that changes again before the server reads its change
// shows only the latest (a fast job may go from enqueued to completed);
// terminal kinds are never skipped.
const (
	EventCurrent         EventKind = "current"          // the job's state when a watch by ids began
	EventEnqueued        EventKind = "enqueued"         // inserted
	EventAvailable       EventKind = "available"        // a delay or retry came due
	EventLeased          EventKind = "leased"           // a worker took it; Job.Attempt is the attempt
	EventProgress        EventKind = "progress"         // Job.LastProgress changed
	EventRetryScheduled  EventKind = "retry_scheduled"  // an attempt failed (Error); runs again at Job.RunAt
	EventReleased        EventKind = "released"         // handed back unstarted
	EventWaitingChildren EventKind = "waiting_children" // a flow parent waits for its children
	EventCompleted       EventKind = "completed"        // Job.Result holds the result; terminal
	EventFailed          EventKind = "failed"           // Error is the last error; terminal
	EventCancelled       EventKind = "cancelled"        // terminal
	EventCheckpoint      EventKind = "checkpoint"       // no job: the cursor moved (the first says the watch is live)
)

var eventKinds = map[queuedv1.WatchEventKind]EventKind{
	queuedv1.WatchEventKind_WATCH_EVENT_KIND_CURRENT:          EventCurrent,
	queuedv1.WatchEventKind_WATCH_EVENT_KIND_ENQUEUED:         EventEnqueued,
	queuedv1.WatchEventKind_WATCH_EVENT_KIND_AVAILABLE:        EventAvailable,
	queuedv1.WatchEventKind_WATCH_EVENT_KIND_LEASED:           EventLeased,
	queuedv1.WatchEventKind_WATCH_EVENT_KIND_PROGRESS:         EventProgress,
	queuedv1.WatchEventKind_WATCH_EVENT_KIND_RETRY_SCHEDULED:  EventRetryScheduled,
	queuedv1.WatchEventKind_WATCH_EVENT_KIND_RELEASED:         EventReleased,
	queuedv1.WatchEventKind_WATCH_EVENT_KIND_WAITING_CHILDREN: EventWaitingChildren,
	queuedv1.WatchEventKind_WATCH_EVENT_KIND_COMPLETED:        EventCompleted,
	queuedv1.WatchEventKind_WATCH_EVENT_KIND_FAILED:           EventFailed,
	queuedv1.WatchEventKind_WATCH_EVENT_KIND_CANCELLED:        EventCancelled,
	queuedv1.WatchEventKind_WATCH_EVENT_KIND_CHECKPOINT:       EventCheckpoint,
}

// WatchFilter selects what Watch reports: JobIDs, or a Queue (optionally
// narrowed to job Names). Kinds narrows either; empty means every kind.
type WatchFilter struct {
	JobIDs []int64
	Queue  string
	Names  []string
	Kinds  []EventKind
	// Cursor resumes after an earlier event of a watch with the same
	// filter; empty starts now.
	Cursor string
}

// WatchEvent is one change of one job, or a checkpoint (Job nil).
type WatchEvent struct {
	Kind EventKind
	Job  *Job // without payload
	// Error is the attempt's error for retry_scheduled and failed.
	Error *AttemptError
	// Cursor resumes a watch right after this event.
	Cursor string
}

// Watch streams the changes of the jobs f selects: for a watch by ids,
// first each job's current state, then every change. It reconnects by
// itself after a disconnect or a server restart and resumes from the last
// cursor, so no terminal change is missed. The sequence ends when ctx ends
// (without an error) or with an error that reconnecting cannot fix: a bad
// filter (INVALID_ARGUMENT), unknown job ids (NOT_FOUND), or a cursor past
// the server's watch retention (OUT_OF_RANGE).
func (c *Client) Watch(ctx context.Context, f WatchFilter) iter.Seq2[WatchEvent, error] {
	return func(yield func(WatchEvent, error) bool) {
		req := &queuedv1.WatchRequest{JobIds: f.JobIDs, Queue: f.Queue, Names: f.Names, Cursor: f.Cursor}
		for _, k := range f.Kinds {
			for pk, kk := range eventKinds {
				if kk == k {
					req.Kinds = append(req.Kinds, pk)
				}
			}
		}
		backoff := 100 * time.Millisecond
		for {
			got, err := c.watchOnce(ctx, req, yield)
			if ctx.Err() != nil || errors.Is(err, errStopped) {
				return
			}
			if !watchRetryable(err) {
				yield(WatchEvent{}, fmt.Errorf("watch: %w", err))
				return
			}
			if got {
				backoff = 100 * time.Millisecond
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff/2 + rand.N(backoff/2+1)):
			}
			backoff = min(backoff*2, 5*time.Second)
		}
	}
}

// errStopped means the caller stopped ranging over a watch.
var errStopped = errors.New("stopped")

// watchOnce runs one stream, keeping req.Cursor at the last event's cursor.
func (c *Client) watchOnce(ctx context.Context, req *queuedv1.WatchRequest, yield func(WatchEvent, error) bool) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.watch.Watch(ctx, req)
	if err != nil {
		return false, err
	}
	for {
		e, err := stream.Recv()
		if err != nil {
			return got, err
		}
		got = true
		req.Cursor = e.GetCursor()
		ev := WatchEvent{Kind: eventKinds[e.GetKind()], Cursor: e.GetCursor()}
		if e.GetJob() != nil {
			ev.Job = jobFromProto(e.GetJob())
		}
		if pe := e.GetError(); pe != nil {
			ev.Error = &AttemptError{Attempt: pe.GetAttempt(), Message: pe.GetMessage(), At: timeOf(pe.GetAt())}
		}
		if !yield(ev, nil) {
			return got, errStopped
		}
	}
}

// watchRetryable tells the errors a reconnect may cure.
func watchRetryable(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.OutOfRange, codes.Unimplemented, codes.PermissionDenied, codes.Unauthenticated:
		return false
	}
	return true
}

// JobFailedError is what Wait returns for a job that failed; Job holds its
// errors.
type JobFailedError struct {
	Job *Job
}

func (e *JobFailedError) Error() string {
	msg := "no error recorded"
	if n := len(e.Job.Errors); n > 0 {
		msg = e.Job.Errors[n-1].Message
	}
	return fmt.Sprintf("job %d (%s) failed after %d attempt(s): %s", e.Job.ID, e.Job.Name, e.Job.Attempt, msg)
}

// Wait blocks until the job finishes and returns it: with a nil error and
// Job.Result when it completed, a *JobFailedError when it failed, and an
// error wrapping ErrJobCancelled when it was cancelled. A job that finished
// before the call is returned at once. Bound the wait with ctx.
func (c *Client) Wait(ctx context.Context, id int64) (*Job, error) {
	for ev, err := range c.Watch(ctx, WatchFilter{JobIDs: []int64{id}}) {
		if err != nil {
			return nil, err
		}
		if ev.Job == nil || !ev.Job.State.Finished() {
			continue
		}
		switch ev.Job.State {
		case StateFailed:
			return ev.Job, &JobFailedError{Job: ev.Job}
		case StateCancelled:
			return ev.Job, fmt.Errorf("job %d: %w", id, ErrJobCancelled)
		}
		return ev.Job, nil
	}
	return nil, fmt.Errorf("wait for job %d: %w", id, context.Cause(ctx))
}

// EnqueueAndWait enqueues one job and waits for it to finish, as Wait does:
// the pattern of a request handler that hands heavy work to a worker and
// answers with its result. Bound the wait with ctx; the job keeps running
// if ctx ends first.
func (c *Client) EnqueueAndWait(ctx context.Context, queue, name string, payload []byte, opts ...EnqueueOption) (*Job, error) {
	e, err := c.Enqueue(ctx, queue, name, payload, opts...)
	if err != nil {
		return nil, err
	}
	return c.Wait(ctx, e.ID)
}

package service

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// EventKind says what happened to a job in a WatchEvent.
type EventKind int

// Event kinds. A job changed again before the reader saw it shows only its
// latest change: a fast job may go from enqueued straight to completed.
// Terminal kinds are never skipped, since nothing follows them.
const (
	// EventCurrent is a job's state when a watch by job ids began.
	EventCurrent EventKind = iota + 1
	// EventEnqueued: inserted, available or scheduled.
	EventEnqueued
	// EventAvailable: a delayed job or a retry came due, or a flow parent's
	// children finished.
	EventAvailable
	// EventLeased: a worker took the job; Job.Attempt is the attempt.
	EventLeased
	// EventProgress: the running job reported progress.
	EventProgress
	// EventRetryScheduled: an attempt failed and the job will run again at
	// Job.RunAt; the error is the last of Job.Errors.
	EventRetryScheduled
	// EventReleased: a worker handed the job back unstarted.
	EventReleased
	// EventWaitingChildren: a flow parent waits for its children.
	EventWaitingChildren
	// EventCompleted: acked; Job.Result holds the result. Terminal.
	EventCompleted
	// EventFailed: out of attempts or non-retryable; Job.Errors holds the
	// errors. Terminal.
	EventFailed
	// EventCancelled: cancelled. Terminal.
	EventCancelled
	// EventCheckpoint carries only a cursor: the watch is live (the first
	// one), or it moved past changes its filter did not match.
	EventCheckpoint
)

// Terminal reports whether the kind ends its job's life.
func (k EventKind) Terminal() bool {
	return k == EventCompleted || k == EventFailed || k == EventCancelled
}

// WatchFilter selects the jobs a watch reports: by ids, or by queue
// (optionally narrowed to job names). Kinds narrows either to some event
// kinds. A cursor is only meaningful with the filter it was issued for.
type WatchFilter struct {
	JobIDs []int64
	Queue  string
	Names  []string
	Kinds  []EventKind
	// FlowID is reserved for flows: every job of the flow rooted at this
	// job. Refused until flows exist.
	FlowID int64
}

// MaxWatchJobIDs bounds a watch by job ids.
const MaxWatchJobIDs = 1000

func (f WatchFilter) validate() error {
	switch {
	case f.FlowID != 0:
		return invalid("flow_id", "watching a flow is not supported yet")
	case len(f.JobIDs) == 0 && f.Queue == "":
		return invalid("job_ids", "name job ids or a queue")
	case len(f.JobIDs) > 0 && f.Queue != "":
		return invalid("queue", "name job ids or a queue, not both")
	case len(f.JobIDs) > MaxWatchJobIDs:
		return invalid("job_ids", "at most %d ids", MaxWatchJobIDs)
	case len(f.Names) > 0 && f.Queue == "":
		return invalid("names", "names narrow a queue watch; set queue")
	}
	for i, id := range f.JobIDs {
		if id <= 0 {
			return invalid(fmt.Sprintf("job_ids[%d]", i), "must be positive")
		}
	}
	if f.Queue != "" {
		if err := validName("queue", f.Queue); err != nil {
			return err
		}
	}
	for i, k := range f.Kinds {
		if k < EventCurrent || k >= EventCheckpoint {
			return invalid(fmt.Sprintf("kinds[%d]", i), "unknown event kind %d", k)
		}
	}
	return nil
}

// matches reports whether job j is one the filter selects (kinds aside).
func (f WatchFilter) matches(j Job) bool {
	if len(f.JobIDs) > 0 {
		return slices.Contains(f.JobIDs, j.ID)
	}
	if j.Queue != f.Queue {
		return false
	}
	return len(f.Names) == 0 || slices.Contains(f.Names, j.Name)
}

func (f WatchFilter) wants(k EventKind) bool {
	return len(f.Kinds) == 0 || slices.Contains(f.Kinds, k)
}

// WatchParams starts a watch.
type WatchParams struct {
	Filter WatchFilter
	// Cursor resumes after a cursor from an earlier event of a watch with
	// the same filter. Empty starts now (after the current state of the
	// named jobs, for a watch by ids).
	Cursor string
}

// WatchEvent is one change of one job, or a checkpoint. Cursor resumes
// the watch right after it.
type WatchEvent struct {
	Kind   EventKind
	Job    Job // without payload; zero for a checkpoint
	Cursor Cursor
}

// changeKind tells what a change was from the job's state before and after.
func changeKind(c Change) EventKind {
	j := c.Job
	if c.PrevState == "" {
		return EventEnqueued
	}
	if c.PrevState == j.State {
		return EventProgress
	}
	switch j.State {
	case StateRunning:
		return EventLeased
	case StateCompleted:
		return EventCompleted
	case StateFailed:
		return EventFailed
	case StateCancelled:
		return EventCancelled
	case StateWaitingChildren:
		return EventWaitingChildren
	}
	if c.PrevState == StateRunning {
		// An attempt that ended in an error recorded it during the attempt;
		// a release leaves the errors of earlier attempts only.
		if n := len(j.Errors); n > 0 && !j.Errors[n-1].At.Before(j.StartedAt) {
			return EventRetryScheduled
		}
		return EventReleased
	}
	return EventAvailable
}

// Watch reports the jobs that p.Filter selects to send until ctx ends or
// send fails: for a watch by ids without a cursor, first each job's current
// state; then every change, in commit order per job. It returns
// ErrWatcherTooSlow when send cannot keep up, ErrClosed when the service
// drains, and a *CursorExpiredError for a cursor past the watch retention.
func (s *Service) Watch(ctx context.Context, p WatchParams, send func(WatchEvent) error) error {
	if err := p.Filter.validate(); err != nil {
		return err
	}
	w := &watch{svc: s, filter: p.Filter, send: send}
	if p.Cursor != "" {
		c, err := ParseCursor(p.Cursor)
		if err != nil {
			return err
		}
		if age := s.now().Sub(c.At); age > s.cfg.WatchRetention {
			return &CursorExpiredError{Cursor: p.Cursor, Age: age, Retention: s.cfg.WatchRetention}
		}
		w.cur, w.resumed = c, true
	} else if err := w.start(ctx); err != nil {
		return err
	}
	// Catch up before subscribing, so a long catch-up does not fill the
	// live buffer; then subscribe and catch up once more, which closes the
	// gap: the hub's next batch starts from a snapshot taken before that
	// second read.
	if err := w.catchUp(ctx); err != nil {
		return err
	}
	sub, err := s.hub.subscribe(ctx, p.Filter)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	defer s.hub.unsubscribe(sub)
	if err := w.catchUp(ctx); err != nil {
		return err
	}
	if err := w.emit(WatchEvent{Kind: EventCheckpoint, Cursor: w.cur}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.draining:
			return ErrClosed
		case <-sub.ready:
		}
		batches, overflow := sub.take()
		if overflow {
			return ErrWatcherTooSlow
		}
		for _, b := range batches {
			if err := w.live(b); err != nil {
				return err
			}
		}
		if err := w.checkpoint(); err != nil {
			return err
		}
	}
}

// watch is one running Watch call.
type watch struct {
	svc      *Service
	filter   WatchFilter
	send     func(WatchEvent) error
	cur      Cursor
	resumed  bool
	lastSent time.Time
	sentCur  Cursor
}

// start sends the current state of the named jobs and sets the cursor to
// the snapshot they were read in.
func (w *watch) start(ctx context.Context) error {
	changes, snap, err := w.svc.store.CurrentJobs(ctx, w.filter.JobIDs)
	if err != nil {
		return fmt.Errorf("watch: read current jobs: %w", err)
	}
	w.cur = Cursor{Seen: snap, At: w.svc.now()}
	byID := make(map[int64]Change, len(changes))
	for _, c := range changes {
		byID[c.Job.ID] = c
	}
	for _, id := range w.filter.JobIDs {
		if _, ok := byID[id]; !ok {
			return fmt.Errorf("job %d: %w", id, ErrNotFound)
		}
	}
	for _, id := range w.filter.JobIDs {
		if err := w.emit(WatchEvent{Kind: EventCurrent, Job: byID[id].Job, Cursor: w.cur}); err != nil {
			return err
		}
	}
	return nil
}

// catchUp reads the store from the cursor until a read comes back complete.
func (w *watch) catchUp(ctx context.Context) error {
	first := true
	for {
		b, err := w.svc.store.ReadChanges(ctx, ChangeQuery{After: w.cur, Filter: w.filter, Limit: w.svc.cfg.WatchReadBatch})
		if err != nil {
			return fmt.Errorf("watch: read changes: %w", err)
		}
		if first && w.resumed && w.cur.Seen.Xmax > b.Snapshot.Xmax {
			return invalid("cursor", "it names transactions this database has not run; was it issued by another database?")
		}
		first = false
		at := w.svc.now()
		for i, c := range b.Changes {
			whole := b.Complete
			if i+1 < len(b.Changes) {
				whole = b.Changes[i+1].XID != c.XID
			}
			if err := w.deliver(b.Snapshot, c, whole); err != nil {
				return err
			}
		}
		if b.Complete {
			w.cur = w.cur.absorb(b.Snapshot, at)
			return nil
		}
	}
}

// live handles one batch from the hub.
func (w *watch) live(b *hubBatch) error {
	for _, it := range b.items {
		if err := w.deliver(b.snap, it.change, it.whole); err != nil {
			return err
		}
	}
	switch {
	case b.complete:
		w.cur = w.cur.absorb(b.snap, b.at)
	case b.lastXID != 0 && !w.cur.Covers(b.lastXID, b.lastID):
		w.cur = w.cur.advance(b.snap, b.lastXID, b.lastID, false)
	}
	return nil
}

// deliver moves the cursor past c and sends it if the filter wants it.
// Changes the cursor covers were sent already (by the catch-up read that
// overlaps the first live batch) and are skipped.
func (w *watch) deliver(snap Snapshot, c Change, whole bool) error {
	if w.cur.Covers(c.XID, c.Job.ID) {
		return nil
	}
	w.cur = w.cur.advance(snap, c.XID, c.Job.ID, whole)
	if !w.filter.matches(c.Job) {
		return nil
	}
	kind := changeKind(c)
	if !w.filter.wants(kind) {
		return nil
	}
	return w.emit(WatchEvent{Kind: kind, Job: c.Job, Cursor: w.cur})
}

// checkpoint sends the cursor when it moved without an event for a while.
func (w *watch) checkpoint() error {
	if w.svc.now().Sub(w.lastSent) < w.svc.cfg.WatchCheckpoint || w.cur.String() == w.sentCur.String() {
		return nil
	}
	return w.emit(WatchEvent{Kind: EventCheckpoint, Cursor: w.cur})
}

func (w *watch) emit(e WatchEvent) error {
	w.lastSent, w.sentCur = w.svc.now(), e.Cursor
	return w.send(e)
}

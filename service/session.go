package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// SessionParams opens a worker session.
type SessionParams struct {
	Queues        []string
	Window        int
	LeaseDuration time.Duration // 0: Config.LeaseDuration
	WorkerID      string
}

// Event is something the server pushes to a worker: a new lease, or the
// cancellation of a job the worker holds.
type Event struct {
	Lease     *Lease
	Cancelled *Cancellation
}

// Cancellation tells a worker to stop a job; its lease is gone.
type Cancellation struct {
	JobID  int64
	Reason string
	// LeaseExpired: the lease ran out and the job was taken back, rather
	// than cancelled.
	LeaseExpired bool
}

// Session is one worker stream. It holds at most Window leases; the
// dispatcher fills the free slots. When the session closes, the leases it
// still holds go back to their queues.
type Session struct {
	svc           *Service
	id            string
	workerID      string
	queues        []string
	leaseDuration time.Duration
	disp          *dispatcher

	inflight sync.WaitGroup // settlements under way

	mu       sync.Mutex
	window   int
	reserved int                // slots the dispatcher is claiming for right now
	held     map[int64]*heldJob // leases delivered or queued for delivery
	outbox   []Event            // events waiting for the sender
	ready    chan struct{}      // signalled when outbox gains events
	closed   bool
}

type heldJob struct {
	token string
	sent  bool // taken by the sender; if false the worker never saw it
}

// OpenSession validates p and registers a new worker session.
func (s *Service) OpenSession(p SessionParams) (*Session, error) {
	if len(p.Queues) == 0 {
		return nil, invalid("open.queues", "at least one queue is required")
	}
	queues := slices.Clone(p.Queues)
	for i, q := range queues {
		if err := validName(fmt.Sprintf("open.queues[%d]", i), q); err != nil {
			return nil, err
		}
	}
	slices.Sort(queues)
	queues = slices.Compact(queues)
	if p.Window < 0 || p.Window > s.cfg.MaxWindow {
		return nil, invalid("open.window", "must be between 0 and %d", s.cfg.MaxWindow)
	}
	if p.LeaseDuration < 0 || p.LeaseDuration > s.cfg.MaxLeaseDuration {
		return nil, invalid("open.lease_duration", "must be between 0 and %v", s.cfg.MaxLeaseDuration)
	}
	if p.LeaseDuration == 0 {
		p.LeaseDuration = s.cfg.LeaseDuration
	}
	if len(p.WorkerID) > 256 {
		return nil, invalid("open.worker_id", "must be at most 256 bytes")
	}
	sess := &Session{
		svc:           s,
		id:            fmt.Sprintf("%s-%d", s.cfg.ReplicaID, s.nextID.Add(1)),
		workerID:      p.WorkerID,
		queues:        queues,
		leaseDuration: p.LeaseDuration,
		window:        p.Window,
		held:          make(map[int64]*heldJob),
		ready:         make(chan struct{}, 1),
	}
	if sess.workerID == "" {
		sess.workerID = sess.id
	}
	if err := s.attach(sess); err != nil {
		return nil, err
	}
	return sess, nil
}

// ID names the session (unique per replica run).
func (ss *Session) ID() string { return ss.id }

// LeaseDuration is the lease length jobs on this session get.
func (ss *Session) LeaseDuration() time.Duration { return ss.leaseDuration }

// Held is the number of jobs the session holds.
func (ss *Session) Held() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.held)
}

// Ready is signalled when events are waiting; call Drain to take them.
func (ss *Session) Ready() <-chan struct{} { return ss.ready }

// Drain takes the waiting events. Leases taken here count as seen by the
// worker: if the session ends without settling them, the attempt counts.
func (ss *Session) Drain() []Event {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	out := ss.outbox
	ss.outbox = nil
	for _, ev := range out {
		if ev.Lease != nil {
			if h, ok := ss.held[ev.Lease.Job.ID]; ok {
				h.sent = true
			}
		}
	}
	return out
}

// SetWindow resizes the window; 0 pauses delivery. Jobs already held stay.
func (ss *Session) SetWindow(n int) error {
	if n < 0 || n > ss.svc.cfg.MaxWindow {
		return invalid("set_window.window", "must be between 0 and %d", ss.svc.cfg.MaxWindow)
	}
	ss.mu.Lock()
	grew := n > ss.window
	ss.window = n
	ss.mu.Unlock()
	if grew {
		ss.disp.signal()
	}
	return nil
}

// Ack, Nack, Extend, Release and UpdateProgress settle a job held on this
// session. They are tracked so that Close waits for them: a worker that
// acks and then hangs up has its acks applied before its leases return.

// Ack completes a job.
func (ss *Session) Ack(ctx context.Context, ref LeaseRef, result []byte) error {
	if !ss.begin() {
		return ErrClosed
	}
	defer ss.inflight.Done()
	return ss.svc.Ack(ctx, ref, result)
}

// AckThen completes a job and enqueues its continuations atomically.
func (ss *Session) AckThen(ctx context.Context, ref LeaseRef, result []byte, then []FlowSpec) ([]int64, error) {
	if !ss.begin() {
		return nil, ErrClosed
	}
	defer ss.inflight.Done()
	return ss.svc.AckThen(ctx, ref, result, then)
}

// Nack fails the current attempt.
func (ss *Session) Nack(ctx context.Context, p NackParams) (Job, error) {
	if !ss.begin() {
		return Job{}, ErrClosed
	}
	defer ss.inflight.Done()
	return ss.svc.Nack(ctx, p)
}

// Extend renews a lease.
func (ss *Session) Extend(ctx context.Context, ref LeaseRef, d time.Duration) (time.Time, error) {
	if !ss.begin() {
		return time.Time{}, ErrClosed
	}
	defer ss.inflight.Done()
	if d == 0 {
		d = ss.leaseDuration
	}
	return ss.svc.Extend(ctx, ref, d)
}

// Release hands a job back unstarted.
func (ss *Session) Release(ctx context.Context, ref LeaseRef) error {
	if !ss.begin() {
		return ErrClosed
	}
	defer ss.inflight.Done()
	return ss.svc.Release(ctx, ref)
}

// UpdateProgress stores a progress report.
func (ss *Session) UpdateProgress(ctx context.Context, ref LeaseRef, progress []byte) error {
	if !ss.begin() {
		return ErrClosed
	}
	defer ss.inflight.Done()
	return ss.svc.UpdateProgress(ctx, ref, progress)
}

func (ss *Session) begin() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return false
	}
	ss.inflight.Add(1)
	return true
}

// Close ends the session: no more deliveries, settlements under way finish,
// then every job still held goes back. Jobs the worker saw count an attempt
// ("worker went away"); jobs it never saw are released without one.
func (ss *Session) Close(ctx context.Context) error {
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return nil
	}
	ss.closed = true
	ss.mu.Unlock()
	ss.svc.detach(ss)
	ss.inflight.Wait()

	ss.mu.Lock()
	held := ss.held
	ss.held = nil
	ss.outbox = nil
	ss.mu.Unlock()
	if ss.svc.crashed.Load() {
		for id := range held {
			ss.svc.leases.CompareAndDelete(id, ss)
		}
		return nil
	}

	var seen, unseen []LeaseRef
	for id, h := range held {
		ss.svc.leases.CompareAndDelete(id, ss)
		ref := LeaseRef{JobID: id, Token: h.token}
		if h.sent {
			seen = append(seen, ref)
		} else {
			unseen = append(unseen, ref)
		}
	}
	var errs []error
	now := ss.svc.now()
	if len(unseen) > 0 {
		if _, err := ss.svc.store.ReleaseJobs(ctx, unseen, now); err != nil {
			errs = append(errs, fmt.Errorf("release %d undelivered jobs: %w", len(unseen), err))
		}
	}
	if len(seen) > 0 {
		if _, err := ss.svc.store.AbandonJobs(ctx, seen, "worker went away: its lease stream ended", now); err != nil {
			errs = append(errs, fmt.Errorf("requeue %d jobs of a closed stream: %w", len(seen), err))
		}
	}
	if len(held) > 0 {
		for _, q := range ss.queues {
			ss.svc.wakeQueue(q)
		}
	}
	return errors.Join(errs...)
}

// free is the number of jobs the dispatcher may still hand to this session.
// Caller holds ss.mu.
func (ss *Session) free() int {
	if ss.closed {
		return 0
	}
	return ss.window - len(ss.held) - ss.reserved
}

// deliver hands a claimed lease to the session. It reports false when the
// session closed meanwhile; the caller then releases the job.
func (ss *Session) deliver(l Lease) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return false
	}
	ss.held[l.Job.ID] = &heldJob{token: l.Token}
	ss.svc.leases.Store(l.Job.ID, ss)
	ss.outbox = append(ss.outbox, Event{Lease: &l})
	ss.signalLocked()
	return true
}

// forget drops a job from the held set after it was settled or cancelled,
// freeing its slot. It reports whether the job was held.
func (ss *Session) forget(id int64) bool {
	ss.mu.Lock()
	_, ok := ss.held[id]
	delete(ss.held, id)
	ss.mu.Unlock()
	return ok
}

func (ss *Session) pushCancel(c Cancellation) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return
	}
	ss.outbox = append(ss.outbox, Event{Cancelled: &c})
	ss.signalLocked()
}

func (ss *Session) signalLocked() {
	select {
	case ss.ready <- struct{}{}:
	default:
	}
}

// leaseHolder returns the local session holding job id, if any.
func (s *Service) leaseHolder(id int64) (*Session, bool) {
	v, ok := s.leases.Load(id)
	if !ok {
		return nil, false
	}
	return v.(*Session), true
}

// settled frees the slot of a job that was acked, nacked, released, or
// whose lease turned out to be lost.
func (s *Service) settled(id int64) {
	sess, ok := s.leaseHolder(id)
	if !ok {
		return
	}
	s.leases.CompareAndDelete(id, sess)
	if sess.forget(id) {
		sess.disp.slotFreed()
	}
}

// onCancelled tells the worker holding job id (if it is on this replica)
// that the job was cancelled, and frees its slot.
func (s *Service) onCancelled(id int64, reason string, leaseExpired bool) {
	sess, ok := s.leaseHolder(id)
	if !ok {
		return
	}
	s.leases.CompareAndDelete(id, sess)
	if sess.forget(id) {
		sess.pushCancel(Cancellation{JobID: id, Reason: reason, LeaseExpired: leaseExpired})
		sess.disp.slotFreed()
	}
}

func queueSetKey(queues []string) string { return strings.Join(queues, "\x00") }

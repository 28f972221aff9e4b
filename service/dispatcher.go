package service

import (
	"context"
	"slices"
	"sync"
	"time"
)

// claimTimeout bounds one claim statement, which runs to completion even
// when the dispatcher is retired meanwhile (see claimFor).
const claimTimeout = 30 * time.Second

// dispatcher feeds every local session that serves the same set of queues.
// It claims for all of their free slots with one statement, so a hundred
// idle workers cost one query per wake-up, not a hundred.
//
// It wakes on a notification that jobs became available (from any replica),
// on a freed slot, and on a slow poll as the safety net. After a claim that
// came back short ("dry"), a freed slot alone does not trigger another claim:
// there is nothing to take until something new is announced.
type dispatcher struct {
	svc    *Service
	key    string
	queues []string
	wake   chan struct{}
	stop   context.CancelFunc

	mu       sync.Mutex
	sessions []*Session
	next     int    // round-robin start
	dry      bool   // the last claim came back short
	gen      uint64 // bumped by every availability signal
	hint     int    // slots the next claim asks for at most (see nextClaimHint)
}

// claimHintMin is the smallest claim the dispatcher sizes down to.
const claimHintMin = 16

// nextClaimHint sizes the next claim from the last one. Every slot a claim
// asks for is a lease owner and an expiry sent to PostgreSQL, so asking for
// all free slots (hundreds with a few large windows) when one job is
// waiting costs both sides far more than the job. A claim that came back
// full doubles the next one, so a backlog reaches ClaimBatchMax in a few
// claims (and a full claim that asked for few, because few slots were free,
// does not shrink it); a short claim sizes the next to twice what it got.
func nextClaimHint(prev, asked, got, limit int) int {
	if got >= asked {
		return min(max(prev, 2*asked, claimHintMin), limit)
	}
	return min(max(2*got, claimHintMin), limit)
}

// attach registers ss with the dispatcher for its queue set, creating the
// dispatcher if this is the set's first session.
func (s *Service) attach(ss *Session) error {
	<-s.ready
	key := queueSetKey(ss.queues)
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.dispatchers[key]
	if !ok {
		if s.runCtx.Err() != nil {
			return ErrClosed
		}
		ctx, stop := context.WithCancel(s.runCtx)
		d = &dispatcher{svc: s, key: key, queues: ss.queues, wake: make(chan struct{}, 1), stop: stop, hint: claimHintMin}
		s.dispatchers[key] = d
		go d.run(ctx)
	}
	ss.disp = d
	d.add(ss)
	return nil
}

// detach removes ss from its dispatcher and retires the dispatcher when it
// served no one else, so queue sets that workers stopped using cost nothing.
func (s *Service) detach(ss *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := ss.disp
	if d.remove(ss) == 0 {
		d.stop()
		delete(s.dispatchers, d.key)
	}
}

// wakeQueue signals every local dispatcher that serves queue q.
func (s *Service) wakeQueue(q string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.dispatchers {
		if _, ok := slices.BinarySearch(d.queues, q); ok {
			d.announce()
		}
	}
}

// wakeAll signals every dispatcher and the promoter, after a gap in which
// notifications may have been lost.
func (s *Service) wakeAll() {
	s.mu.Lock()
	for _, d := range s.dispatchers {
		d.announce()
	}
	s.mu.Unlock()
	s.wakePromoter()
	s.wakeScheduler()
}

func (d *dispatcher) add(ss *Session) {
	d.mu.Lock()
	d.sessions = append(d.sessions, ss)
	d.dry = false
	d.gen++
	d.mu.Unlock()
	d.signal()
}

// remove drops ss and returns how many sessions remain.
func (d *dispatcher) remove(ss *Session) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if i := slices.Index(d.sessions, ss); i >= 0 {
		d.sessions = slices.Delete(d.sessions, i, i+1)
	}
	return len(d.sessions)
}

// announce records that new jobs may be available and wakes the loop.
func (d *dispatcher) announce() {
	d.mu.Lock()
	d.dry = false
	d.gen++
	d.mu.Unlock()
	d.signal()
}

// slotFreed wakes the loop unless the queue is known to be dry.
func (d *dispatcher) slotFreed() {
	d.mu.Lock()
	dry := d.dry
	d.mu.Unlock()
	if !dry {
		d.signal()
	}
}

func (d *dispatcher) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *dispatcher) run(ctx context.Context) {
	poll := time.NewTicker(d.svc.cfg.PollInterval)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-poll.C:
			d.mu.Lock()
			d.dry = false
			d.mu.Unlock()
		}
		d.dispatch(ctx)
	}
}

// dispatch claims for free slots until they are full or the queues are dry.
func (d *dispatcher) dispatch(ctx context.Context) {
	for ctx.Err() == nil {
		slots, gen := d.reserve()
		if len(slots) == 0 {
			return
		}
		n, err := d.claimFor(ctx, slots)
		if err != nil {
			if ctx.Err() == nil {
				d.svc.log.Log(ctx, logLevelFor(err), "claim jobs", "queues", d.queues, "err", err)
				// Back off a little; the poll (or the next signal) retries.
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
			return
		}
		d.mu.Lock()
		d.hint = nextClaimHint(d.hint, len(slots), n, d.svc.cfg.ClaimBatchMax)
		if n < len(slots) {
			if d.gen == gen {
				d.dry = true
			}
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
	}
}

// reserve takes the free slots of every session, interleaved round-robin so
// that a short claim is shared fairly, up to the claim hint.
func (d *dispatcher) reserve() ([]*Session, uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	limit := min(d.hint, d.svc.cfg.ClaimBatchMax)
	var slots []*Session
	n := len(d.sessions)
	select {
	case <-d.svc.draining:
		return nil, d.gen
	default:
	}
	if n == 0 {
		return nil, d.gen
	}
	start := d.next % n
	d.next++
	free := make([]int, n)
	for i, ss := range d.sessions {
		ss.mu.Lock()
		free[i] = ss.free()
		ss.mu.Unlock()
	}
	for more := true; more && len(slots) < limit; {
		more = false
		for k := range n {
			i := (start + k) % n
			if free[i] > 0 && len(slots) < limit {
				slots = append(slots, d.sessions[i])
				free[i]--
				more = true
			}
		}
	}
	for _, ss := range slots {
		ss.mu.Lock()
		ss.reserved++
		ss.mu.Unlock()
	}
	return slots, d.gen
}

// claimFor runs one claim for the reserved slots and delivers what it got.
// Reservations are returned whatever happens.
func (d *dispatcher) claimFor(ctx context.Context, slots []*Session) (int, error) {
	defer func() {
		for _, ss := range slots {
			ss.mu.Lock()
			ss.reserved--
			ss.mu.Unlock()
		}
	}()
	now := d.svc.now()
	p := ClaimParams{Queues: d.queues, Now: now, Owners: make([]string, len(slots)), ExpiresAt: make([]time.Time, len(slots))}
	for i, ss := range slots {
		p.Owners[i] = ss.workerID
		p.ExpiresAt[i] = now.Add(ss.leaseDuration)
	}
	// The claim must not be cut short by the dispatcher retiring (its last
	// worker left) or the service stopping: a claim statement that
	// committed just before a cancellation would still report an error,
	// and its jobs would be neither delivered nor handed back, stuck
	// running until their leases expired. Let it finish; the sessions that
	// closed meanwhile hand the jobs back below.
	claimCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
	defer cancel()
	claimed, err := d.svc.claimJobs(claimCtx, p) // leaves out paused queues, applies rate limits (queuebook.go)
	if err != nil {
		return 0, err
	}
	var orphans []LeaseRef
	for _, c := range claimed {
		// The reservation is replaced by a held lease atomically enough:
		// deliver adds to held before the deferred reserved-- runs, so the
		// session never looks to have more room than it has.
		if !slots[c.Slot].deliver(c.Lease) {
			orphans = append(orphans, LeaseRef{JobID: c.Lease.Job.ID, Token: c.Lease.Token})
		}
	}
	if len(orphans) > 0 {
		// The session closed while we claimed: the worker never saw these.
		if _, err := d.svc.store.ReleaseJobs(context.WithoutCancel(ctx), orphans, d.svc.now()); err != nil {
			d.svc.log.Log(ctx, logLevelFor(err), "release jobs claimed for a closed stream", "count", len(orphans), "err", err)
		}
		d.announce()
	}
	return len(claimed), nil
}

// ActiveDispatchers is the number of queue sets that have workers on this
// replica (one dispatcher each), for metrics and tests.
func (s *Service) ActiveDispatchers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.dispatchers)
}

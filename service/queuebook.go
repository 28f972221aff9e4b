package service

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// minTokenWait bounds from below how long a dispatcher sleeps for a token
// of a rate-limited queue, so a fast limit (thousands per second) is
// claimed in batches of the tokens that accrued, not once per token.
const minTokenWait = 5 * time.Millisecond

// queueBook is this replica's copy of the queue settings that change how
// jobs are claimed (paused or rate-limited queues), so the dispatchers can
// consult it without a query. It is loaded before the first claim, reloaded
// on every queue notification (from any replica), after the notification
// connection was lost, and every PollInterval as the safety net.
//
// For rate-limited queues it also remembers when the bucket holds its next
// token, so dispatchers sleep until then (a timer wakes them) instead of
// asking the database on every wake-up.
type queueBook struct {
	svc    *Service
	snap   atomic.Pointer[queueSnapshot] // nil until the first load
	gen    atomic.Uint64                 // bumped by every local change
	loadMu sync.Mutex
	reload chan struct{}
	// claims is held shared by every claim from the moment it reads the
	// settings until its statement returns, and exclusively while new
	// settings are published (by apply, or by a reload). So once a replica
	// shows a pause, no claim on it that read the old settings is still
	// running: a job enqueued after that cannot be taken by a claim that
	// started before it. (Other replicas apply a pause when its
	// notification arrives; see docs/queues.md.)
	claims sync.RWMutex

	mu        sync.Mutex
	notBefore map[string]time.Time // limited queue -> no whole token before
	timers    map[string]*time.Timer
	due       map[string]time.Time // when each timer fires
}

// queueSnapshot is immutable once published.
type queueSnapshot struct {
	controls map[string]QueueSettings // only queues that are paused or limited
}

func newQueueBook(s *Service) *queueBook {
	return &queueBook{
		svc:       s,
		reload:    make(chan struct{}, 1),
		notBefore: make(map[string]time.Time),
		timers:    make(map[string]*time.Timer),
		due:       make(map[string]time.Time),
	}
}

// requestReload asks the book's loop to reload the settings.
func (b *queueBook) requestReload() {
	select {
	case b.reload <- struct{}{}:
	default:
	}
}

// run reloads the settings when asked and every PollInterval until ctx
// ends.
func (b *queueBook) run(ctx context.Context) {
	poll := time.NewTicker(b.svc.cfg.PollInterval)
	defer poll.Stop()
	defer b.stopTimers()
	for {
		if err := b.load(ctx); err != nil && ctx.Err() == nil {
			b.svc.log.WarnContext(ctx, "load queue settings", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-b.reload:
		case <-poll.C:
		}
	}
}

// current returns the settings, loading them if this replica has never
// read them: a replica must not hand out a paused queue's jobs just
// because it started a moment ago.
func (b *queueBook) current(ctx context.Context) (*queueSnapshot, error) {
	if snap := b.snap.Load(); snap != nil {
		return snap, nil
	}
	if err := b.load(ctx); err != nil {
		return nil, err
	}
	return b.snap.Load(), nil
}

// load reads the settings and publishes them, then wakes the dispatchers
// of queues whose claims may now take more (resumed, limit raised or
// cleared). A load that raced with a local change is not published (it may
// predate it) but repeated.
func (b *queueBook) load(ctx context.Context) error {
	b.loadMu.Lock()
	defer b.loadMu.Unlock()
	gen := b.gen.Load()
	all, err := b.svc.store.ListQueueSettings(ctx)
	if err != nil {
		return err
	}
	next := &queueSnapshot{controls: make(map[string]QueueSettings)}
	for _, st := range all {
		if st.controlled() {
			next.controls[st.Queue] = st
		}
	}
	if b.gen.Load() != gen {
		b.requestReload()
		return nil
	}
	b.publish(next)
	return nil
}

// apply publishes a setting this replica just wrote, without waiting for
// the notification to come back.
func (b *queueBook) apply(st QueueSettings) {
	b.loadMu.Lock()
	defer b.loadMu.Unlock()
	b.gen.Add(1)
	next := &queueSnapshot{controls: make(map[string]QueueSettings)}
	if old := b.snap.Load(); old != nil {
		maps.Copy(next.controls, old.controls)
	}
	delete(next.controls, st.Queue)
	if st.controlled() {
		next.controls[st.Queue] = st
	}
	b.publish(next)
	b.requestReload() // the other queues may be stale if we never loaded
}

// publish swaps in next and wakes the dispatchers of every queue whose
// settings changed. Called with loadMu held.
//
// Lock order: loadMu, then claims. A claim takes claims shared only after
// current() returned, so it never waits for loadMu while holding claims.
func (b *queueBook) publish(next *queueSnapshot) {
	b.claims.Lock()
	old := b.snap.Swap(next)
	b.claims.Unlock()
	var changed []string
	if old != nil {
		for q, st := range old.controls {
			if cur, ok := next.controls[q]; !ok || cur.Paused != st.Paused || cur.Limit != st.Limit {
				changed = append(changed, q)
			}
		}
		for q, st := range next.controls {
			if prev, ok := old.controls[q]; !ok || prev.Limit != st.Limit {
				changed = append(changed, q)
			}
		}
	}
	if len(changed) == 0 {
		return
	}
	b.mu.Lock()
	for _, q := range changed {
		// A token wait computed under the old limit means nothing now.
		delete(b.notBefore, q)
	}
	b.mu.Unlock()
	for _, q := range changed {
		b.svc.wakeQueue(q)
	}
}

// mayClaim reports whether the limited queue q may hold a token at now.
// Tokens only accrue with time and are only taken by claims, so when this
// replica last saw the bucket empty until some time, asking earlier is
// pointless.
func (b *queueBook) mayClaim(q string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	nb, ok := b.notBefore[q]
	return !ok || !now.Before(nb)
}

// sleepUntilToken records that q's bucket holds no whole token for wait
// and arms a timer that wakes q's dispatchers then.
func (b *queueBook) sleepUntilToken(q string, now time.Time, wait time.Duration) {
	wait = max(wait, minTokenWait)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.notBefore[q] = now.Add(wait)
	fire := time.Now().Add(wait)
	t, ok := b.timers[q]
	if !ok {
		b.timers[q] = time.AfterFunc(wait, func() { b.svc.wakeQueue(q) })
		b.due[q] = fire
		return
	}
	if d := b.due[q]; d.After(time.Now()) && !d.After(fire) {
		return // an earlier wake-up is pending already
	}
	t.Reset(wait)
	b.due[q] = fire
}

func (b *queueBook) stopTimers() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, t := range b.timers {
		t.Stop()
	}
}

// claimJobs is the dispatcher's claim. Queues nobody configured cost one
// map lookup each: with no paused or limited queue among p.Queues it is
// exactly ClaimJobs. Otherwise paused queues are left out, each
// rate-limited queue is claimed on its own under its bucket (before the
// others, so a deep unlimited backlog cannot starve it; it cannot starve
// them since its tokens bound it), then the unlimited rest together.
// Priorities therefore order jobs within these groups, not across them.
func (s *Service) claimJobs(ctx context.Context, p ClaimParams) ([]ClaimedJob, error) {
	if _, err := s.queues.current(ctx); err != nil { // loads the settings once
		return nil, err
	}
	s.queues.claims.RLock()
	defer s.queues.claims.RUnlock()
	snap := s.queues.snap.Load()
	if len(snap.controls) == 0 {
		return s.store.ClaimJobs(ctx, p)
	}
	var open, limited []string
	for _, q := range p.Queues {
		switch st := snap.controls[q]; {
		case st.Paused:
		case st.Limit.Limited():
			limited = append(limited, q)
		default:
			open = append(open, q)
		}
	}
	if len(open) == len(p.Queues) {
		return s.store.ClaimJobs(ctx, p)
	}
	var out []ClaimedJob
	claim := func(queues []string, limited bool) error {
		want := len(p.Owners) - len(out)
		sub := ClaimParams{Queues: queues, Owners: p.Owners[len(out):], ExpiresAt: p.ExpiresAt[len(out):], Now: p.Now}
		var got []ClaimedJob
		var err error
		if limited {
			got, err = s.store.ClaimLimited(ctx, sub)
		} else {
			got, err = s.store.ClaimJobs(ctx, sub)
		}
		if err != nil {
			return err
		}
		offset := len(out)
		for _, c := range got {
			c.Slot += offset
			out = append(out, c)
		}
		if limited && len(got) < want {
			s.afterShortLimitedClaim(ctx, queues[0], p.Now)
		}
		return nil
	}
	for _, q := range limited {
		if len(out) == len(p.Owners) {
			break
		}
		if !s.queues.mayClaim(q, p.Now) {
			continue
		}
		if err := claim([]string{q}, true); err != nil {
			return s.partialClaim(ctx, out, err)
		}
	}
	if len(open) > 0 && len(out) < len(p.Owners) {
		if err := claim(open, false); err != nil {
			return s.partialClaim(ctx, out, err)
		}
	}
	return out, nil
}

// partialClaim ends a claim whose later statement failed: jobs already
// claimed are delivered (returning the error would strand them until their
// leases expire); the error is logged and the next wake-up or poll retries.
func (s *Service) partialClaim(ctx context.Context, out []ClaimedJob, err error) ([]ClaimedJob, error) {
	if len(out) == 0 {
		return nil, err
	}
	s.log.ErrorContext(ctx, "claim jobs", "err", err, "claimed_before_error", len(out))
	return out, nil
}

// afterShortLimitedClaim finds out why a limited claim came back short: an
// empty bucket (then sleep until its next token) or no more jobs (then
// nothing: the next enqueue announces itself).
func (s *Service) afterShortLimitedClaim(ctx context.Context, q string, now time.Time) {
	b, err := s.store.ReadBucket(ctx, q, now)
	if err != nil {
		if ctx.Err() == nil {
			s.log.WarnContext(ctx, "read rate limit bucket", "queue", q, "err", err)
		}
		return // the poll looks again
	}
	if wait := b.nextToken(now); wait > 0 {
		s.queues.sleepUntilToken(q, now, wait)
	}
}

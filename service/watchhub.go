package service

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// watchHub is the one reader of job changes per replica. While anyone
// watches, it reads the changes after its cursor whenever a notification
// says something changed (with a slow poll as the safety net), and fans
// each batch out to the watchers whose filter it matches. It never blocks
// on a watcher: each has a bounded buffer, and one that overflows is
// dropped. While nobody watches it reads nothing.
type watchHub struct {
	svc  *Service
	wake chan struct{}

	mu     sync.Mutex
	cursor *Cursor // nil while nobody watches
	subs   map[*subscription]struct{}
}

func newWatchHub(s *Service) *watchHub {
	return &watchHub{svc: s, wake: make(chan struct{}, 1), subs: make(map[*subscription]struct{})}
}

// hubBatch is the part of one read that matches a subscription.
type hubBatch struct {
	snap     Snapshot
	at       time.Time
	complete bool
	items    []hubItem
	// lastXID/lastID is the read's last change (matching or not), so a
	// watcher can move past an incomplete read.
	lastXID uint64
	lastID  int64
}

type hubItem struct {
	change Change
	whole  bool // the last change of its transaction in the read
}

// subscription is one watcher's buffer.
type subscription struct {
	filter WatchFilter
	limit  int
	ready  chan struct{}

	mu       sync.Mutex
	pending  []*hubBatch
	count    int
	overflow bool
}

// push appends b without blocking; past the limit the watcher is marked
// too slow and its buffer dropped.
func (s *subscription) push(b *hubBatch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.overflow {
		return
	}
	if len(b.items) == 0 && b.complete && len(s.pending) > 0 {
		// A newer complete read supersedes an older one with nothing in it.
		if last := s.pending[len(s.pending)-1]; len(last.items) == 0 && last.complete {
			s.pending[len(s.pending)-1] = b
			return
		}
	}
	n := max(1, len(b.items))
	if s.count+n > s.limit {
		s.overflow, s.pending, s.count = true, nil, 0
	} else {
		s.pending = append(s.pending, b)
		s.count += n
	}
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

func (s *subscription) take() ([]*hubBatch, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.pending
	s.pending, s.count = nil, 0
	return out, s.overflow
}

// subscribe registers a watcher. Every batch the hub fans out after
// subscribe returns was read after a snapshot taken before it returned.
func (h *watchHub) subscribe(ctx context.Context, f WatchFilter) (*subscription, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cursor == nil {
		_, snap, err := h.svc.store.CurrentJobs(ctx, nil)
		if err != nil {
			return nil, err
		}
		h.cursor = &Cursor{Seen: snap, At: h.svc.now()}
	}
	sub := &subscription{filter: f, limit: h.svc.cfg.WatchBuffer, ready: make(chan struct{}, 1)}
	h.subs[sub] = struct{}{}
	return sub, nil
}

func (h *watchHub) unsubscribe(sub *subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, sub)
	if len(h.subs) == 0 {
		h.cursor = nil
	}
}

// notify asks for a read soon.
func (h *watchHub) notify() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// run reads until ctx ends.
func (h *watchHub) run(ctx context.Context) {
	poll := time.NewTicker(h.svc.cfg.PollInterval)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.wake:
		case <-poll.C:
		}
		if err := h.read(ctx); err != nil && ctx.Err() == nil {
			// The cursor did not move, so nothing is lost; the next
			// notification or poll tries again.
			h.svc.log.WarnContext(ctx, "read job changes for watchers", slog.Any("err", err))
		}
	}
}

// read reads and fans out until a read comes back complete.
func (h *watchHub) read(ctx context.Context) error {
	for {
		h.mu.Lock()
		c := h.cursor
		h.mu.Unlock()
		if c == nil {
			return nil
		}
		b, err := h.svc.store.ReadChanges(ctx, ChangeQuery{After: *c, Limit: h.svc.cfg.WatchReadBatch})
		if err != nil {
			return err
		}
		at := h.svc.now()
		next := *c
		if n := len(b.Changes); n > 0 && !b.Complete {
			last := b.Changes[n-1]
			next = next.advance(b.Snapshot, last.XID, last.Job.ID, false)
		} else if b.Complete {
			next = next.absorb(b.Snapshot, at)
		}
		h.mu.Lock()
		if h.cursor != c {
			// Everyone left (and maybe someone new came) meanwhile: the new
			// cursor is where to read from.
			h.mu.Unlock()
			continue
		}
		h.cursor = &next
		for sub := range h.subs {
			sub.push(batchFor(sub.filter, b, at))
		}
		h.mu.Unlock()
		if b.Complete {
			return nil
		}
	}
}

// batchFor picks the changes of b that f matches, kinds included, so a
// watcher's buffer holds only what it will send.
func batchFor(f WatchFilter, b ChangeBatch, at time.Time) *hubBatch {
	out := &hubBatch{snap: b.Snapshot, at: at, complete: b.Complete}
	for i, c := range b.Changes {
		if !f.matches(c.Job) || !f.wants(changeKind(c)) {
			continue
		}
		whole := b.Complete
		if i+1 < len(b.Changes) {
			whole = b.Changes[i+1].XID != c.XID
		}
		out.items = append(out.items, hubItem{change: c, whole: whole})
	}
	if n := len(b.Changes); n > 0 {
		out.lastXID, out.lastID = b.Changes[n-1].XID, b.Changes[n-1].Job.ID
	}
	return out
}

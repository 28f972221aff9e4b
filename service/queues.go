package service

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"
)

// Rate limit bounds.
const (
	// MaxRateLimit bounds RateLimit.Max: a bucket larger than this is no
	// limit worth a row lock per claim.
	MaxRateLimit = 1_000_000
	// MinRatePer bounds RateLimit.Per from below (the store keeps
	// milliseconds).
	MinRatePer = time.Millisecond
	// MaxRatePer bounds RateLimit.Per from above.
	MaxRatePer = 24 * time.Hour
)

// RateLimit caps how many jobs of a queue start per interval, across all
// replicas. It is a token bucket: it holds at most Max tokens, refills Max
// tokens per Per, and each job started takes one. After an idle spell a
// burst of Max jobs may start at once; under a steady backlog jobs start at
// Max per Per, evenly spread. In any interval of length w at most
// Max + Max*w/Per jobs start (see docs/queues.md for the slack that
// replicas and clock skew add).
type RateLimit struct {
	Max int           // 0: no limit
	Per time.Duration // at least MinRatePer when Max > 0
}

// Limited reports whether the limit caps anything.
func (r RateLimit) Limited() bool { return r.Max > 0 }

// QueueSettings are the operator's controls of one queue. A queue nobody
// configured has the zero settings: running, unlimited.
type QueueSettings struct {
	Queue     string
	Paused    bool
	Limit     RateLimit
	UpdatedAt time.Time // zero when the queue was never configured
}

// controlled reports whether the settings change how the queue is claimed.
func (q QueueSettings) controlled() bool { return q.Paused || q.Limit.Limited() }

// QueueInfo is a queue's settings and its unfinished jobs by state.
// Finished jobs are not counted: there may be millions, and counting them
// would read them all (metrics report an estimate).
type QueueInfo struct {
	QueueSettings
	Counts map[JobState]int64 // available, scheduled, running, waiting_children
}

// Bucket is a rate-limited queue's token bucket as of some time.
type Bucket struct {
	Limit      RateLimit // Max 0: the queue is not limited
	Tokens     float64   // tokens available at RefilledAt
	RefilledAt time.Time // the bucket's own clock; may be ahead of a replica's
}

// nextToken is how long after now the bucket holds a whole token, or 0
// when it holds one already (or has no limit).
func (b Bucket) nextToken(now time.Time) time.Duration {
	if !b.Limit.Limited() || b.Tokens >= 1 {
		return 0
	}
	wait := time.Duration((1 - b.Tokens) * float64(b.Limit.Per) / float64(b.Limit.Max))
	if ahead := b.RefilledAt.Sub(now); ahead > 0 {
		// Another replica's clock is ahead of ours and refilled up to its
		// own now: nothing more accrues until ours gets there.
		wait += ahead
	}
	return max(wait, time.Nanosecond)
}

// QueueStore is the part of the Store port that keeps queue settings. The
// methods that change settings publish a NotifyQueue notification in the
// same transaction, so every replica reloads them.
type QueueStore interface {
	// SetQueuePaused pauses or resumes a queue. A resume also announces the
	// queue's jobs as available, so dispatchers on every replica claim them
	// at once.
	SetQueuePaused(ctx context.Context, queue string, paused bool, now time.Time) (QueueSettings, error)
	// SetRateLimit sets or (Max 0) clears a queue's rate limit. A newly
	// limited queue starts with a full bucket; a changed limit keeps the
	// tokens the old one left, capped at the new Max. It announces the
	// queue's jobs as available.
	SetRateLimit(ctx context.Context, queue string, limit RateLimit, now time.Time) (QueueSettings, error)
	// ListQueueSettings returns every configured queue, by name.
	ListQueueSettings(ctx context.Context) ([]QueueSettings, error)
	// CountLiveJobs counts unfinished jobs by queue and state, for one
	// queue, or for every queue when queue is "".
	CountLiveJobs(ctx context.Context, queue string) (map[string]map[JobState]int64, error)
	// ClaimLimited is ClaimJobs for the one queue p.Queues[0] under its
	// rate limit: it refills the queue's bucket to p.Now, claims at most
	// as many jobs as it holds whole tokens, and takes one token per job
	// claimed, in one statement that holds the bucket's row lock, so
	// claimers on every replica share one bucket. A queue that has no
	// limit (any more) is claimed as by ClaimJobs.
	ClaimLimited(ctx context.Context, p ClaimParams) ([]ClaimedJob, error)
	// ReadBucket returns a queue's bucket refilled to now, without taking
	// from it. A queue without a limit has a zero Bucket.Limit.
	ReadBucket(ctx context.Context, queue string, now time.Time) (Bucket, error)
}

// PauseQueue stops every replica from handing out the queue's jobs until
// ResumeQueue. Enqueueing still works, and jobs already running finish
// (and settle) normally. A claim already in flight on some replica when
// the pause lands may still deliver its jobs (see docs/queues.md).
func (s *Service) PauseQueue(ctx context.Context, queue string) (QueueInfo, error) {
	return s.setPaused(ctx, queue, true)
}

// ResumeQueue lets a paused queue's jobs flow again, at once, on every
// replica.
func (s *Service) ResumeQueue(ctx context.Context, queue string) (QueueInfo, error) {
	return s.setPaused(ctx, queue, false)
}

func (s *Service) setPaused(ctx context.Context, queue string, paused bool) (QueueInfo, error) {
	if err := validName("queue", queue); err != nil {
		return QueueInfo{}, err
	}
	st, err := s.store.SetQueuePaused(ctx, queue, paused, s.now())
	if err != nil {
		return QueueInfo{}, err
	}
	s.queues.apply(st)
	return s.withCounts(ctx, st)
}

// SetRateLimit limits how many of the queue's jobs start per interval
// across all replicas; a zero Max clears the limit. The change takes
// effect on every replica within a notification's round trip.
func (s *Service) SetRateLimit(ctx context.Context, queue string, limit RateLimit) (QueueInfo, error) {
	if err := validName("queue", queue); err != nil {
		return QueueInfo{}, err
	}
	switch {
	case limit.Max < 0:
		return QueueInfo{}, invalid("max", "must not be negative (0 clears the limit)")
	case limit.Max > MaxRateLimit:
		return QueueInfo{}, invalid("max", "must be at most %d", MaxRateLimit)
	case limit.Per < 0:
		return QueueInfo{}, invalid("per", "must not be negative")
	case limit.Max > 0 && limit.Per < MinRatePer:
		return QueueInfo{}, invalid("per", "must be at least %v when max is set", MinRatePer)
	case limit.Per > MaxRatePer:
		return QueueInfo{}, invalid("per", "must be at most %v", MaxRatePer)
	case limit.Per%time.Millisecond != 0:
		return QueueInfo{}, invalid("per", "must be a whole number of milliseconds")
	}
	if limit.Max == 0 {
		limit.Per = 0
	}
	st, err := s.store.SetRateLimit(ctx, queue, limit, s.now())
	if err != nil {
		return QueueInfo{}, err
	}
	s.queues.apply(st)
	return s.withCounts(ctx, st)
}

// GetQueue returns a queue's settings and job counts. Any name is a queue:
// one never configured and holding no jobs comes back running, unlimited
// and empty.
func (s *Service) GetQueue(ctx context.Context, queue string) (QueueInfo, error) {
	if err := validName("queue", queue); err != nil {
		return QueueInfo{}, err
	}
	all, err := s.store.ListQueueSettings(ctx)
	if err != nil {
		return QueueInfo{}, err
	}
	st := QueueSettings{Queue: queue}
	if i := slices.IndexFunc(all, func(q QueueSettings) bool { return q.Queue == queue }); i >= 0 {
		st = all[i]
	}
	return s.withCounts(ctx, st)
}

// ListQueueSettings returns, by name, every queue that holds unfinished
// jobs or was ever configured, with its settings and counts.
func (s *Service) ListQueueSettings(ctx context.Context) ([]QueueInfo, error) {
	all, err := s.store.ListQueueSettings(ctx)
	if err != nil {
		return nil, err
	}
	counts, err := s.store.CountLiveJobs(ctx, "")
	if err != nil {
		return nil, err
	}
	byName := make(map[string]QueueInfo, len(all)+len(counts))
	for _, st := range all {
		byName[st.Queue] = QueueInfo{QueueSettings: st}
	}
	for q, c := range counts {
		info := byName[q]
		info.Queue, info.Counts = q, c
		byName[q] = info
	}
	out := make([]QueueInfo, 0, len(byName))
	for _, info := range byName {
		if info.Counts == nil {
			info.Counts = map[JobState]int64{}
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b QueueInfo) int { return strings.Compare(a.Queue, b.Queue) })
	return out, nil
}

// QueueControls returns, by name, the queues this replica claims
// differently: paused or rate-limited ones. It is the replica's own view,
// for metrics and tests; it trails a change made through another replica
// by a notification's round trip.
func (s *Service) QueueControls() []QueueSettings {
	snap := s.queues.snap.Load()
	if snap == nil {
		return nil
	}
	out := slices.Collect(maps.Values(snap.controls))
	slices.SortFunc(out, func(a, b QueueSettings) int { return strings.Compare(a.Queue, b.Queue) })
	return out
}

func (s *Service) withCounts(ctx context.Context, st QueueSettings) (QueueInfo, error) {
	counts, err := s.store.CountLiveJobs(ctx, st.Queue)
	if err != nil {
		return QueueInfo{}, err
	}
	c := counts[st.Queue]
	if c == nil {
		c = map[JobState]int64{}
	}
	return QueueInfo{QueueSettings: st, Counts: c}, nil
}

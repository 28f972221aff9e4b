package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Service is the job queue: it validates and coalesces writes, runs one
// dispatcher per distinct set of queues that workers serve, and keeps leases
// honest (sweeping expired ones, requeueing a vanished worker's jobs).
type Service struct {
	cfg    Config
	store  Store
	log    *slog.Logger
	now    func() time.Time
	nextID atomic.Int64

	hub     *watchHub
	queues  *queueBook // paused and rate-limited queues (queuebook.go)
	inserts *batcher[[]NewJob, []EnqueuedJob]
	acks    *batcher[Completion, struct{}]

	mu          sync.Mutex
	dispatchers map[string]*dispatcher // by queue-set key
	runCtx      context.Context        // set by Run; dispatchers live under it

	// leases maps a job id to the local session that holds it, so a
	// settlement through any path (stream or unary) frees the right slot and
	// a cancellation reaches the right worker.
	leases sync.Map // int64 -> *Session

	promoterWake  chan struct{}
	schedulerWake chan struct{}
	ready         chan struct{}
	draining      chan struct{}
	drainOnce     sync.Once
	crashed       atomic.Bool
}

// New returns a service over store. Call Run to start its background work.
func New(store Store, cfg Config) (*Service, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("service config: %w", err)
	}
	s := &Service{
		cfg:           cfg,
		store:         store,
		log:           cfg.Logger,
		now:           cfg.Now,
		dispatchers:   make(map[string]*dispatcher),
		promoterWake:  make(chan struct{}, 1),
		schedulerWake: make(chan struct{}, 1),
		ready:         make(chan struct{}),
		draining:      make(chan struct{}),
	}
	s.hub = newWatchHub(s)
	s.queues = newQueueBook(s)
	s.inserts = newBatcher(cfg.Flushers, cfg.WriteBatchMax, func(j []NewJob) int { return len(j) }, s.flushInserts)
	s.acks = newBatcher(cfg.Flushers, cfg.WriteBatchMax, func(Completion) int { return 1 }, s.flushAcks)
	return s, nil
}

// Config returns the effective configuration, defaults applied.
func (s *Service) Config() Config { return s.cfg }

// Run runs the background work (notification listener, dispatchers, lease
// sweeper, promoter of scheduled jobs, cleaner) until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	s.mu.Lock()
	s.runCtx = ctx
	s.mu.Unlock()
	close(s.ready)

	wg.Go(func() { s.inserts.run(ctx) })
	wg.Go(func() { s.acks.run(ctx) })
	wg.Go(func() { s.runPromoter(ctx) })
	wg.Go(func() { s.runSweeper(ctx) })
	wg.Go(func() { s.hub.run(ctx) })
	wg.Go(func() { s.runScheduler(ctx) })
	wg.Go(func() { s.queues.run(ctx) })
	errc := make(chan error, 1)
	wg.Go(func() {
		errc <- s.store.Listen(ctx, s.onNotification, func() {
			// Notifications were lost while disconnected. Reload the queue
			// settings before anything else runs on this goroutine, so no
			// notification that follows is acted on with a pause missed in
			// the gap; then look for work that was announced meanwhile.
			if err := s.queues.load(ctx); err != nil {
				s.log.Log(ctx, logLevelFor(err), "reload queue settings after reconnecting", "err", err)
				s.queues.requestReload()
			}
			s.wakeAll()
			s.hub.notify()
		})
	})
	wg.Wait()
	if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("listen for notifications: %w", err)
	}
	return nil
}

// Drain stops handing out jobs. Streams end once their workers hold
// nothing (see grpcserver); settlements keep working until Run ends.
func (s *Service) Drain() {
	s.drainOnce.Do(func() { close(s.draining) })
}

// Crash makes the service stop the way a killed process does: streams
// that end from now on hand nothing back, so their jobs stay leased until
// the leases expire and a sweeper (on any replica) takes them back. Crash
// tests use it to check that this, and only this, recovers the jobs.
func (s *Service) Crash() { s.crashed.Store(true) }

// Draining is closed when Drain was called.
func (s *Service) Draining() <-chan struct{} { return s.draining }

// Enqueue validates specs and inserts them all or none. Concurrent calls
// are coalesced into one insert.
func (s *Service) Enqueue(ctx context.Context, specs []JobSpec) ([]EnqueuedJob, error) {
	if len(specs) == 0 {
		return nil, invalid("jobs", "at least one job is required")
	}
	if len(specs) > s.cfg.WriteBatchMax {
		return nil, invalid("jobs", "at most %d jobs per call", s.cfg.WriteBatchMax)
	}
	now := s.now()
	rows := make([]NewJob, len(specs))
	for i, spec := range specs {
		row, err := s.resolve(spec, now, fmt.Sprintf("jobs[%d].", i))
		if err != nil {
			return nil, err
		}
		rows[i] = row
	}
	out, err := s.inserts.do(ctx, rows)
	if err != nil {
		return nil, err
	}
	s.afterInsert(rows)
	return out, nil
}

// resolve applies defaults to spec and validates it.
func (s *Service) resolve(spec JobSpec, now time.Time, prefix string) (NewJob, error) {
	if err := validName(prefix+"queue", spec.Queue); err != nil {
		return NewJob{}, err
	}
	if err := validName(prefix+"name", spec.Name); err != nil {
		return NewJob{}, err
	}
	if len(spec.Payload) > s.cfg.MaxPayloadBytes {
		return NewJob{}, &TooLargeError{Field: prefix + "payload", Size: len(spec.Payload), Limit: s.cfg.MaxPayloadBytes}
	}
	if spec.Delay < 0 {
		return NewJob{}, invalid(prefix+"delay", "must not be negative")
	}
	if spec.Delay > 0 && !spec.RunAt.IsZero() {
		return NewJob{}, invalid(prefix+"run_at", "set run_at or delay, not both")
	}
	if spec.MaxAttempts < 0 {
		return NewJob{}, invalid(prefix+"max_attempts", "must be at least 1")
	}
	if len(spec.UniqueKey) > 512 {
		return NewJob{}, invalid(prefix+"unique_key", "must be at most 512 bytes")
	}
	metaSize := 0
	for k, v := range spec.Metadata {
		if k == "" {
			return NewJob{}, invalid(prefix+"metadata", "keys must not be empty")
		}
		metaSize += len(k) + len(v)
	}
	if metaSize > 64<<10 {
		return NewJob{}, &TooLargeError{Field: prefix + "metadata", Size: metaSize, Limit: 64 << 10}
	}
	if err := spec.Backoff.validate(prefix + "backoff"); err != nil {
		return NewJob{}, err
	}
	row := NewJob{
		Queue:       spec.Queue,
		Name:        spec.Name,
		Payload:     spec.Payload,
		Metadata:    spec.Metadata,
		Priority:    spec.Priority,
		RunAt:       spec.RunAt,
		MaxAttempts: spec.MaxAttempts,
		Backoff:     spec.Backoff.withDefaults(),
		UniqueKey:   spec.UniqueKey,
		CreatedAt:   now,
	}
	if row.MaxAttempts == 0 {
		row.MaxAttempts = s.cfg.DefaultMaxAttempts
	}
	if row.RunAt.IsZero() {
		row.RunAt = now.Add(spec.Delay)
	}
	row.State = StateAvailable
	if row.RunAt.After(now) {
		row.State = StateScheduled
	}
	return row, nil
}

func validName(field, v string) error {
	switch {
	case v == "":
		return invalid(field, "must not be empty")
	case len(v) > MaxNameLength:
		return invalid(field, "must be at most %d bytes, got %d", MaxNameLength, len(v))
	}
	return nil
}

// flushInserts writes many Enqueue calls as one insert. If the combined
// insert fails, each call is retried alone so one bad call cannot fail the
// others.
func (s *Service) flushInserts(ctx context.Context, calls [][]NewJob) []batchResult[[]EnqueuedJob] {
	results := make([]batchResult[[]EnqueuedJob], len(calls))
	if len(calls) == 1 {
		out, err := s.store.InsertJobs(ctx, calls[0])
		results[0] = batchResult[[]EnqueuedJob]{out, err}
		return results
	}
	var all []NewJob
	for _, c := range calls {
		all = append(all, c...)
	}
	out, err := s.store.InsertJobs(ctx, all)
	if err != nil {
		for i, c := range calls {
			out, err := s.store.InsertJobs(ctx, c)
			results[i] = batchResult[[]EnqueuedJob]{out, err}
		}
		return results
	}
	for i, c := range calls {
		results[i] = batchResult[[]EnqueuedJob]{res: out[:len(c):len(c)]}
		out = out[len(c):]
	}
	return results
}

// afterInsert wakes local dispatchers and the promoter without waiting for
// the notification's round trip through PostgreSQL.
func (s *Service) afterInsert(rows []NewJob) {
	seen := make(map[string]bool)
	for _, r := range rows {
		if r.State == StateScheduled {
			s.wakePromoter()
			continue
		}
		if !seen[r.Queue] {
			seen[r.Queue] = true
			s.wakeQueue(r.Queue)
		}
	}
}

// Ack completes a leased job. Concurrent acks are coalesced into one update.
func (s *Service) Ack(ctx context.Context, ref LeaseRef, result []byte) error {
	if err := validRef(ref); err != nil {
		return err
	}
	if len(result) > s.cfg.MaxPayloadBytes {
		return &TooLargeError{Field: "result", Size: len(result), Limit: s.cfg.MaxPayloadBytes}
	}
	_, err := s.acks.do(ctx, Completion{LeaseRef: ref, Result: result})
	if err == nil || errors.Is(err, ErrLeaseLost) {
		s.settled(ref.JobID)
	}
	return err
}

func (s *Service) flushAcks(ctx context.Context, acks []Completion) []batchResult[struct{}] {
	results := make([]batchResult[struct{}], len(acks))
	errs, err := s.store.CompleteJobs(ctx, acks, s.now())
	for i := range results {
		if err != nil {
			results[i].err = err
		} else {
			results[i].err = errs[i]
		}
	}
	return results
}

// NackParams ends an attempt with an error.
type NackParams struct {
	LeaseRef
	Error        string
	NonRetryable bool
	RetryDelay   time.Duration // overrides the job's backoff when > 0
}

// Nack fails the current attempt: the job is retried after its backoff while
// attempts remain and the error is retryable, and fails otherwise. It
// returns the job as it now is.
func (s *Service) Nack(ctx context.Context, p NackParams) (Job, error) {
	if err := validRef(p.LeaseRef); err != nil {
		return Job{}, err
	}
	if p.RetryDelay < 0 {
		return Job{}, invalid("retry_delay", "must not be negative")
	}
	if len(p.Error) > 64<<10 {
		p.Error = p.Error[:64<<10]
	}
	now := s.now()
	job, err := s.store.FailAttempt(ctx, FailParams{
		LeaseRef: p.LeaseRef,
		Error:    p.Error,
		Now:      now,
		Decide: func(j Job) (JobState, time.Time) {
			if p.NonRetryable || j.Attempt >= j.MaxAttempts {
				return StateFailed, j.RunAt
			}
			delay := p.RetryDelay
			if delay == 0 {
				delay = j.Backoff.Delay(j.Attempt, nil)
			}
			if delay <= 0 {
				return StateAvailable, now
			}
			return StateScheduled, now.Add(delay)
		},
	})
	if err == nil || errors.Is(err, ErrLeaseLost) {
		s.settled(p.JobID)
	}
	if err != nil {
		return Job{}, err
	}
	switch job.State {
	case StateScheduled:
		s.wakePromoter()
	case StateAvailable:
		s.wakeQueue(job.Queue)
	}
	return job, nil
}

// Extend renews a lease for d from now (0: the session's or default length).
func (s *Service) Extend(ctx context.Context, ref LeaseRef, d time.Duration) (time.Time, error) {
	if err := validRef(ref); err != nil {
		return time.Time{}, err
	}
	if d < 0 {
		return time.Time{}, invalid("lease_duration", "must not be negative")
	}
	if d > s.cfg.MaxLeaseDuration {
		return time.Time{}, invalid("lease_duration", "must be at most %v", s.cfg.MaxLeaseDuration)
	}
	if d == 0 {
		d = s.cfg.LeaseDuration
		if sess, ok := s.leaseHolder(ref.JobID); ok {
			d = sess.leaseDuration
		}
	}
	expires := s.now().Add(d)
	if err := s.store.ExtendLease(ctx, ref, expires); err != nil {
		if errors.Is(err, ErrLeaseLost) {
			s.settled(ref.JobID)
		}
		return time.Time{}, err
	}
	return expires, nil
}

// Release hands a leased job back without counting the attempt.
func (s *Service) Release(ctx context.Context, ref LeaseRef) error {
	if err := validRef(ref); err != nil {
		return err
	}
	released, err := s.store.ReleaseJobs(ctx, []LeaseRef{ref}, s.now())
	if err != nil {
		return err
	}
	s.settled(ref.JobID)
	if len(released) == 0 {
		return s.leaseLostOrNotFound(ctx, ref.JobID)
	}
	return nil
}

// UpdateProgress stores a progress report on a leased job.
func (s *Service) UpdateProgress(ctx context.Context, ref LeaseRef, progress []byte) error {
	if err := validRef(ref); err != nil {
		return err
	}
	if len(progress) > s.cfg.MaxPayloadBytes {
		return &TooLargeError{Field: "progress", Size: len(progress), Limit: s.cfg.MaxPayloadBytes}
	}
	return s.store.UpdateProgress(ctx, ref, progress)
}

// GetJob returns one job.
func (s *Service) GetJob(ctx context.Context, id int64) (Job, error) {
	if id <= 0 {
		return Job{}, invalid("id", "must be positive")
	}
	return s.store.GetJob(ctx, id)
}

// CancelJob cancels an unfinished job. If a worker is running it, the
// replica holding the worker's stream tells the worker.
func (s *Service) CancelJob(ctx context.Context, id int64, reason string) (Job, error) {
	if id <= 0 {
		return Job{}, invalid("id", "must be positive")
	}
	if reason == "" {
		reason = "cancelled"
	}
	job, prev, err := s.store.CancelJob(ctx, id, reason, s.now())
	if err != nil {
		return Job{}, err
	}
	if prev == StateRunning {
		s.onCancelled(id, reason, false)
	}
	return job, nil
}

// leaseLostOrNotFound tells a refused settlement's two causes apart.
func (s *Service) leaseLostOrNotFound(ctx context.Context, id int64) error {
	if _, err := s.store.GetJob(ctx, id); err != nil {
		return err
	}
	return ErrLeaseLost
}

func validRef(ref LeaseRef) error {
	if ref.JobID <= 0 {
		return invalid("job_id", "must be positive")
	}
	if ref.Token == "" {
		return invalid("lease_token", "must not be empty")
	}
	return nil
}

func (s *Service) onNotification(n Notification) {
	switch n.Kind {
	case NotifyAvailable:
		s.wakeQueue(n.Queue)
	case NotifyCancelled:
		s.onCancelled(n.JobID, n.Reason, n.LeaseExpired)
	case NotifyChanged:
		s.hub.notify()
	case NotifySchedules:
		s.wakeScheduler()
	case NotifyQueue:
		s.queues.requestReload()
	}
}

package service

import (
	"errors"
	"log/slog"
	"time"
)

// Defaults for Config. They are exported so cmd/queued can show them in its
// flag help.
const (
	LeaseDurationDefault      = 30 * time.Second
	MaxLeaseDurationDefault   = 24 * time.Hour
	DefaultMaxAttemptsDefault = 5
	MaxPayloadBytesDefault    = 1 << 20
	RetentionDefault          = 24 * time.Hour
	SweepIntervalDefault      = time.Second
	PollIntervalDefault       = 2 * time.Second
	PingIntervalDefault       = 15 * time.Second
	MaxWindowDefault          = 10_000
	ClaimBatchMaxDefault      = 1_000
	WriteBatchMaxDefault      = 2_000
	FlushersDefault           = 2
	WatchRetentionDefault     = time.Hour
	WatchBufferDefault        = 10_000
	WatchReadBatchDefault     = 1_000
	WatchCheckpointDefault    = 5 * time.Second
	// ScheduleMisfireGraceDefault: a tick fired up to a minute late is on
	// time; older ticks follow the schedule's catch-up policy.
	ScheduleMisfireGraceDefault = time.Minute
	SchedulerMaxSleepDefault    = time.Minute
)

// MaxNameLength bounds queue and job names, so they stay usable as labels
// and index keys.
const MaxNameLength = 128

// Config tunes the service. The zero value is usable: withDefaults fills in
// every unset field.
type Config struct {
	// Now is the clock; nil means time.Now. Tests move it instead of sleeping.
	Now func() time.Time
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
	// LeaseDuration is the lease length when a worker names none.
	LeaseDuration time.Duration
	// MaxLeaseDuration bounds what a worker may ask for.
	MaxLeaseDuration time.Duration
	// DefaultMaxAttempts applies to jobs that set none.
	DefaultMaxAttempts int32
	// MaxPayloadBytes bounds a job's payload, result and progress.
	MaxPayloadBytes int
	// Retention is how long finished jobs (and their results) are kept.
	Retention time.Duration
	// SweepInterval is how often expired leases are taken back and old
	// finished jobs cleaned up.
	SweepInterval time.Duration
	// PollInterval is the dispatcher's safety-net poll, for the case where
	// a notification was lost. Normal wake-ups are notifications.
	PollInterval time.Duration
	// PingInterval is how often an idle worker stream is pinged.
	PingInterval time.Duration
	// MaxWindow bounds a worker's window.
	MaxWindow int
	// ClaimBatchMax bounds the jobs one claim statement takes.
	ClaimBatchMax int
	// WriteBatchMax bounds the rows one coalesced insert or ack carries.
	WriteBatchMax int
	// Flushers is how many coalesced writes of one kind may run at once.
	Flushers int
	// ReplicaID names this server instance in logs and lease owners.
	ReplicaID string
	// WatchRetention is how old a watch cursor may be: a watcher that
	// resumes within it misses no terminal change. It must be shorter than
	// Retention, which keeps the finished jobs it reads; unset, it is an
	// hour or half of Retention, whichever is shorter.
	WatchRetention time.Duration
	// WatchBuffer bounds the events buffered for one watcher; a watcher
	// that falls further behind is disconnected (RESOURCE_EXHAUSTED), so
	// a slow watcher costs neither the queue nor other watchers.
	WatchBuffer int
	// WatchReadBatch bounds the changes one read returns.
	WatchReadBatch int
	// WatchCheckpoint is how often a watcher whose filter matched nothing
	// is sent its advanced cursor, so it can resume from near the present.
	WatchCheckpoint time.Duration
	// ParseCron parses the cron expressions of schedules; nil means only
	// "every <duration>" schedules are accepted. cmd/queued and tests wire
	// internal/cronspec.
	ParseCron CronParser
	// ScheduleMisfireGrace is how late a schedule tick may fire and still
	// count as on time rather than missed (see CatchUpPolicy).
	ScheduleMisfireGrace time.Duration
	// SchedulerMaxSleep bounds the scheduler's sleep between looks at the
	// schedules, the safety net for a lost change notification.
	SchedulerMaxSleep time.Duration
}

func (c Config) withDefaults() Config {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	setDefault(&c.LeaseDuration, LeaseDurationDefault)
	setDefault(&c.MaxLeaseDuration, MaxLeaseDurationDefault)
	setDefault(&c.DefaultMaxAttempts, DefaultMaxAttemptsDefault)
	setDefault(&c.MaxPayloadBytes, MaxPayloadBytesDefault)
	setDefault(&c.Retention, RetentionDefault)
	setDefault(&c.SweepInterval, SweepIntervalDefault)
	setDefault(&c.PollInterval, PollIntervalDefault)
	setDefault(&c.PingInterval, PingIntervalDefault)
	setDefault(&c.MaxWindow, MaxWindowDefault)
	setDefault(&c.ClaimBatchMax, ClaimBatchMaxDefault)
	setDefault(&c.WriteBatchMax, WriteBatchMaxDefault)
	setDefault(&c.Flushers, FlushersDefault)
	if c.WatchRetention == 0 {
		// Leave half of a short job retention as margin: a finished job
		// a resumed watch must read is deleted after Retention.
		c.WatchRetention = min(WatchRetentionDefault, c.Retention/2)
	}
	setDefault(&c.WatchBuffer, WatchBufferDefault)
	setDefault(&c.WatchReadBatch, WatchReadBatchDefault)
	setDefault(&c.WatchCheckpoint, WatchCheckpointDefault)
	setDefault(&c.ScheduleMisfireGrace, ScheduleMisfireGraceDefault)
	setDefault(&c.SchedulerMaxSleep, SchedulerMaxSleepDefault)
	if c.ReplicaID == "" {
		c.ReplicaID = "queued"
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.LeaseDuration > c.MaxLeaseDuration {
		errs = append(errs, errors.New("lease duration exceeds the maximum lease duration"))
	}
	if c.LeaseDuration < 0 || c.Retention < 0 || c.SweepInterval < 0 || c.PollInterval < 0 || c.PingInterval < 0 ||
		c.ScheduleMisfireGrace < 0 || c.SchedulerMaxSleep < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	if c.WatchRetention >= c.Retention {
		errs = append(errs, errors.New("watch retention must be shorter than retention: finished jobs are what a resumed watch reads"))
	}
	if c.WatchBuffer < c.WatchReadBatch {
		errs = append(errs, errors.New("the watch buffer must hold at least one read batch"))
	}
	if c.WatchRetention < 0 || c.WatchCheckpoint < 0 || c.WatchBuffer < 0 {
		errs = append(errs, errors.New("watch settings must not be negative"))
	}
	if c.DefaultMaxAttempts < 1 {
		errs = append(errs, errors.New("default max attempts must be at least 1"))
	}
	return errors.Join(errs...)
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

package service

import (
	"context"
	"strings"
	"time"
)

// Schedule defaults and bounds.
const (
	// CatchUpWindowDefault is how far back CatchUpAll reaches when the
	// schedule names no window.
	CatchUpWindowDefault = 24 * time.Hour
	// MinInterval bounds "every <duration>" schedules from below.
	MinInterval = time.Second
	// MaxNextFireTimes bounds how many upcoming fire times GetSchedule
	// computes.
	MaxNextFireTimes = 100
)

// CatchUpPolicy says what happens to ticks missed while no scheduler ran
// (every replica down, or the database unreachable). A tick is missed when it
// is older than Config.ScheduleMisfireGrace at the time it could be fired.
type CatchUpPolicy string

// Catch-up policies.
const (
	// CatchUpSkip drops missed ticks; the schedule resumes at its next tick.
	CatchUpSkip CatchUpPolicy = "skip"
	// CatchUpOne fires one job that stands for all missed ticks (labelled
	// with the latest of them). It is the default: a daily report missed
	// during an outage runs once when the server is back, not zero or many
	// times.
	CatchUpOne CatchUpPolicy = "one"
	// CatchUpAll fires one job per missed tick within CatchUpWindow; older
	// ones are dropped.
	CatchUpAll CatchUpPolicy = "all"
)

// OverlapPolicy says whether a tick fires while the job of the previous
// tick is still unfinished.
type OverlapPolicy string

// Overlap policies.
const (
	// OverlapAllow fires every tick regardless of earlier jobs.
	OverlapAllow OverlapPolicy = "allow"
	// OverlapSkip drops a tick while the schedule's previous job is
	// unfinished (scheduled, available, running or waiting for children).
	OverlapSkip OverlapPolicy = "skip"
)

// JobTemplate is the job a schedule enqueues at each tick.
type JobTemplate struct {
	Queue       string
	Name        string
	Payload     []byte
	Metadata    map[string]string
	Priority    int32
	MaxAttempts int32 // 0 means Config.DefaultMaxAttempts, resolved when stored
	Backoff     Backoff
}

// Schedule is a named, repeating job: a cron expression or a fixed
// interval in a time zone, a job template and its policies. Fields below
// NextFireAt are kept by the server.
type Schedule struct {
	Name string
	// Spec is a cron expression (5 fields, optional leading seconds,
	// @hourly/@daily/...) or "every <Go duration>", e.g. "every 15m".
	Spec string
	// TimeZone is an IANA zone name; "" means UTC. Cron fields are read on
	// this zone's wall clock; intervals ignore it.
	TimeZone      string
	Job           JobTemplate
	StartAt       time.Time // zero: no start bound
	EndAt         time.Time // zero: no end bound
	Paused        bool
	CatchUp       CatchUpPolicy // "" means CatchUpOne
	CatchUpWindow time.Duration // CatchUpAll only; 0 means CatchUpWindowDefault
	Overlap       OverlapPolicy // "" means OverlapAllow

	ID         int64
	NextFireAt time.Time // zero: no further tick (ended, or paused)
	LastFireAt time.Time // the latest tick that enqueued a job
	LastJobID  int64     // the latest job enqueued by a tick or a trigger
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// ScheduleSpec computes a schedule's fire times.
type ScheduleSpec interface {
	// Next returns the first fire time strictly after t, or the zero time
	// if there is none.
	Next(t time.Time) time.Time
}

// CronParser parses a cron expression for a time zone. The service keeps
// no parser of its own (it imports nothing outside the standard library);
// the wiring supplies one.
type CronParser func(expr string, loc *time.Location) (ScheduleSpec, error)

// ScheduleStore is the part of the Store port that keeps schedules. Every
// method that changes a schedule publishes a schedule notification in the
// same transaction, so the scheduler of every replica recomputes its sleep.
type ScheduleStore interface {
	// UpsertSchedule creates or replaces the schedule named sc.Name. On
	// replace, sc.NextFireAt is taken only when the timing (spec, zone,
	// start, end) changed or the schedule is resumed; otherwise the stored
	// next tick stays, so re-applying the same schedule loses no tick.
	UpsertSchedule(ctx context.Context, sc Schedule) (Schedule, error)
	GetSchedule(ctx context.Context, name string) (Schedule, error)
	ListSchedules(ctx context.Context) ([]Schedule, error)
	PauseSchedule(ctx context.Context, name string, now time.Time) (Schedule, error)
	// ResumeSchedule unpauses a schedule, its next tick chosen by next from
	// the locked row (ticks that fell in the pause do not fire).
	ResumeSchedule(ctx context.Context, name string, now time.Time, next func(Schedule) time.Time) (Schedule, error)
	DeleteSchedule(ctx context.Context, name string) error
	// TriggerSchedule enqueues the schedule's job now, outside its ticks.
	TriggerSchedule(ctx context.Context, name string, now time.Time) (int64, error)
	// FireSchedules locks up to p.Limit due, unpaused schedules (skipping
	// those another replica holds) and, in one transaction, enqueues the
	// jobs of the ticks p.Plan chooses, records each tick as fired (a tick
	// recorded once is never enqueued again), and stores the next tick. It
	// returns how many schedules it processed.
	FireSchedules(ctx context.Context, p FireParams) (int, error)
	// NextScheduleFire returns the earliest next tick of any unpaused
	// schedule, or the zero time.
	NextScheduleFire(ctx context.Context) (time.Time, error)
	// DeleteFiredTicks forgets fired ticks recorded before the cutoff.
	DeleteFiredTicks(ctx context.Context, before time.Time, limit int) (int, error)
}

// FireParams asks the store to fire due schedules.
type FireParams struct {
	Now   time.Time
	Limit int
	// Plan chooses, for a locked due schedule, the ticks to enqueue and
	// the next tick.
	Plan func(DueSchedule) FirePlan
}

// DueSchedule is a locked schedule whose next tick has come.
type DueSchedule struct {
	Schedule
	// LastJobUnfinished reports whether the job of the previous tick or
	// trigger still exists and is not terminal.
	LastJobUnfinished bool
}

// FirePlan is what to do with a due schedule.
type FirePlan struct {
	Ticks []time.Time // one job each
	Next  time.Time   // zero: no further tick
}

// UpsertSchedule validates sc, applies defaults and stores it, replacing a
// schedule of the same name. Calling it twice with the same schedule is the
// same as calling it once.
func (s *Service) UpsertSchedule(ctx context.Context, sc Schedule) (Schedule, error) {
	sc, spec, err := s.resolveSchedule(sc)
	if err != nil {
		return Schedule{}, err
	}
	now := s.now()
	sc.NextFireAt = spec.Next(now)
	sc.CreatedAt, sc.UpdatedAt = now, now
	out, err := s.store.UpsertSchedule(ctx, sc)
	if err != nil {
		return Schedule{}, err
	}
	s.wakeScheduler()
	return out, nil
}

// GetSchedule returns a schedule and up to n of its upcoming fire times
// (from its next tick on; none while paused).
func (s *Service) GetSchedule(ctx context.Context, name string, n int) (Schedule, []time.Time, error) {
	if err := validName("name", name); err != nil {
		return Schedule{}, nil, err
	}
	if n < 0 || n > MaxNextFireTimes {
		return Schedule{}, nil, invalid("next_count", "must be between 0 and %d", MaxNextFireTimes)
	}
	sc, err := s.store.GetSchedule(ctx, name)
	if err != nil {
		return Schedule{}, nil, err
	}
	var upcoming []time.Time
	if sc.Paused || sc.NextFireAt.IsZero() || n == 0 {
		return sc, upcoming, nil
	}
	spec, err := s.compileSpec(sc)
	if err != nil {
		return sc, nil, nil // stored before a parser change; the scheduler logs it
	}
	for t := sc.NextFireAt; !t.IsZero() && len(upcoming) < n; t = spec.Next(t) {
		upcoming = append(upcoming, t)
	}
	return sc, upcoming, nil
}

// ListSchedules returns every schedule by name.
func (s *Service) ListSchedules(ctx context.Context) ([]Schedule, error) {
	return s.store.ListSchedules(ctx)
}

// PauseSchedule stops a schedule from firing until it is resumed.
func (s *Service) PauseSchedule(ctx context.Context, name string) (Schedule, error) {
	if err := validName("name", name); err != nil {
		return Schedule{}, err
	}
	sc, err := s.store.PauseSchedule(ctx, name, s.now())
	if err != nil {
		return Schedule{}, err
	}
	s.wakeScheduler()
	return sc, nil
}

// ResumeSchedule lets a paused schedule fire again from its next tick
// after now; ticks that fell in the pause are not caught up.
func (s *Service) ResumeSchedule(ctx context.Context, name string) (Schedule, error) {
	if err := validName("name", name); err != nil {
		return Schedule{}, err
	}
	now := s.now()
	var specErr error
	sc, err := s.store.ResumeSchedule(ctx, name, now, func(cur Schedule) time.Time {
		spec, err := s.compileSpec(cur)
		if err != nil {
			specErr = err
			return time.Time{}
		}
		return spec.Next(now)
	})
	if err != nil {
		return Schedule{}, err
	}
	if specErr != nil {
		s.log.ErrorContext(ctx, "resumed schedule has an unusable spec", "schedule", name, "err", specErr)
	}
	s.wakeScheduler()
	return sc, nil
}

// DeleteSchedule removes a schedule. Jobs it already enqueued stay.
func (s *Service) DeleteSchedule(ctx context.Context, name string) error {
	if err := validName("name", name); err != nil {
		return err
	}
	if err := s.store.DeleteSchedule(ctx, name); err != nil {
		return err
	}
	s.wakeScheduler()
	return nil
}

// TriggerSchedule enqueues the schedule's job now, paused or not, without
// moving its ticks. It returns the job's id.
func (s *Service) TriggerSchedule(ctx context.Context, name string) (int64, error) {
	if err := validName("name", name); err != nil {
		return 0, err
	}
	return s.store.TriggerSchedule(ctx, name, s.now())
}

// resolveSchedule validates sc and fills in defaults.
func (s *Service) resolveSchedule(sc Schedule) (Schedule, ScheduleSpec, error) {
	if err := validName("name", sc.Name); err != nil {
		return Schedule{}, nil, err
	}
	if strings.TrimSpace(sc.Spec) == "" {
		return Schedule{}, nil, invalid("spec", "must not be empty: a cron expression or \"every <duration>\"")
	}
	if sc.TimeZone == "" {
		sc.TimeZone = "UTC"
	}
	if !sc.StartAt.IsZero() && !sc.EndAt.IsZero() && !sc.EndAt.After(sc.StartAt) {
		return Schedule{}, nil, invalid("end_at", "must be after start_at")
	}
	switch sc.CatchUp {
	case "":
		sc.CatchUp = CatchUpOne
	case CatchUpSkip, CatchUpOne, CatchUpAll:
	default:
		return Schedule{}, nil, invalid("catch_up", "unknown policy %q (want skip, one or all)", sc.CatchUp)
	}
	if sc.CatchUpWindow < 0 {
		return Schedule{}, nil, invalid("catch_up_window", "must not be negative")
	}
	if sc.CatchUpWindow > 0 && sc.CatchUp != CatchUpAll {
		return Schedule{}, nil, invalid("catch_up_window", "applies only to catch-up policy all")
	}
	if sc.CatchUp == CatchUpAll && sc.CatchUpWindow == 0 {
		sc.CatchUpWindow = CatchUpWindowDefault
	}
	switch sc.Overlap {
	case "":
		sc.Overlap = OverlapAllow
	case OverlapAllow, OverlapSkip:
	default:
		return Schedule{}, nil, invalid("overlap", "unknown policy %q (want allow or skip)", sc.Overlap)
	}
	job, err := s.resolve(JobSpec{
		Queue:       sc.Job.Queue,
		Name:        sc.Job.Name,
		Payload:     sc.Job.Payload,
		Metadata:    sc.Job.Metadata,
		Priority:    sc.Job.Priority,
		MaxAttempts: sc.Job.MaxAttempts,
		Backoff:     sc.Job.Backoff,
	}, s.now(), "job.")
	if err != nil {
		return Schedule{}, nil, err
	}
	sc.Job.MaxAttempts, sc.Job.Backoff = job.MaxAttempts, job.Backoff
	spec, err := s.compileSpec(sc)
	if err != nil {
		return Schedule{}, nil, err
	}
	if spec.Next(s.now()).IsZero() && (sc.EndAt.IsZero() || sc.EndAt.After(s.now())) {
		return Schedule{}, nil, invalid("spec", "never fires")
	}
	return sc, spec, nil
}

// compileSpec turns a schedule's spec, zone and bounds into its fire times.
func (s *Service) compileSpec(sc Schedule) (ScheduleSpec, error) {
	if sc.TimeZone == "Local" {
		return nil, invalid("time_zone", "must be an IANA zone name such as Europe/Berlin, not Local")
	}
	loc, err := time.LoadLocation(sc.TimeZone)
	if err != nil {
		return nil, invalid("time_zone", "unknown time zone %q", sc.TimeZone)
	}
	expr := strings.TrimSpace(sc.Spec)
	var spec ScheduleSpec
	if rest, ok := strings.CutPrefix(expr, "every "); ok {
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		if err != nil {
			return nil, invalid("spec", "bad interval %q: %v", rest, err)
		}
		if d < MinInterval {
			return nil, invalid("spec", "interval must be at least %v", MinInterval)
		}
		spec = interval{every: d, anchor: sc.StartAt}
	} else {
		if s.cfg.ParseCron == nil {
			return nil, invalid("spec", "this server has no cron parser; use \"every <duration>\"")
		}
		spec, err = s.cfg.ParseCron(expr, loc)
		if err != nil {
			return nil, invalid("spec", "bad cron expression %q: %v", expr, err)
		}
	}
	return bounded{spec: spec, start: sc.StartAt, end: sc.EndAt}, nil
}

// interval fires every `every`, at anchor + k*every: aligned to the Unix
// epoch when anchor is zero (so "every 15m" fires at :00, :15, :30, :45
// UTC), else to the schedule's start. Time zones and DST do not affect it.
type interval struct {
	every  time.Duration
	anchor time.Time
}

func (iv interval) Next(t time.Time) time.Time {
	anchor := iv.anchor
	if anchor.IsZero() {
		anchor = time.Unix(0, 0)
	}
	if t.Before(anchor) {
		return anchor
	}
	k := t.Sub(anchor) / iv.every
	return anchor.Add((k + 1) * iv.every)
}

// bounded limits a spec to [start, end].
type bounded struct {
	spec       ScheduleSpec
	start, end time.Time
}

func (b bounded) Next(t time.Time) time.Time {
	if !b.start.IsZero() && t.Before(b.start) {
		t = b.start.Add(-time.Nanosecond)
	}
	n := b.spec.Next(t)
	if !b.end.IsZero() && n.After(b.end) {
		return time.Time{}
	}
	return n
}

package service

import (
	"context"
	"time"
)

const (
	// fireBatch bounds the schedules one firing transaction locks. The
	// store fires a batch with a fixed number of statements, so a tick with
	// many schedules due at once costs a few round trips, not a few per
	// schedule.
	fireBatch = 1000
	// maxTicksPerBatch bounds the jobs one firing transaction enqueues, so
	// a batch of schedules that all catch up many ticks stays a transaction
	// of bounded size: once a batch has planned this many ticks, its
	// remaining schedules keep their due tick and the next batch fires them.
	maxTicksPerBatch = 10_000
	// maxTicksPerFire bounds the jobs one schedule enqueues per firing, so
	// catching up a long outage of a frequent schedule happens in chunks
	// (each its own transaction) rather than one huge one.
	maxTicksPerFire = 1000
	// maxMissedScan bounds the walk over missed ticks that CatchUpOne does
	// to label its job with the latest of them.
	maxMissedScan = 100_000
	// lockedRetry is how soon the scheduler looks again at a schedule that
	// was due but locked by another replica's firing: that replica either
	// commits (and the tick is done) or dies (and its lock goes).
	lockedRetry = time.Second
	// firedTickPruneEvery is how often the scheduler forgets fired ticks
	// older than the retention period.
	firedTickPruneEvery = time.Minute
)

// wakeScheduler makes the scheduler recompute its sleep now.
func (s *Service) wakeScheduler() {
	select {
	case s.schedulerWake <- struct{}{}:
	default:
	}
}

// runScheduler fires schedules. Every replica runs it; the store's row
// locks and fired-tick records make each tick fire once however many do.
// It sleeps until the earliest next tick of any schedule (at most
// SchedulerMaxSleep, the safety net for a lost notification) and wakes
// early when a schedule changes on any replica.
func (s *Service) runScheduler(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var lastPrune time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.schedulerWake:
		}
		wait := s.cfg.SchedulerMaxSleep
		next, err := s.FireDue(ctx)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			s.log.Log(ctx, logLevelFor(err), "fire due schedules", "err", err)
			wait = lockedRetry
		case !next.IsZero():
			d := next.Sub(s.now())
			if d <= 0 {
				d = lockedRetry
			}
			wait = min(wait, d)
		}
		if now := time.Now(); now.Sub(lastPrune) >= firedTickPruneEvery {
			lastPrune = now
			s.pruneFiredTicks(ctx)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// FireDue fires every tick that is due at Now() and returns the earliest
// next tick of any unpaused schedule (zero if none). The scheduler loop
// calls it; tests that move a fake clock call it to step the scheduler
// without waiting for timers.
func (s *Service) FireDue(ctx context.Context) (time.Time, error) {
	for {
		now := s.now()
		behind := false // a schedule still has due ticks after its firing
		budget := maxTicksPerBatch
		n, err := s.store.FireSchedules(ctx, FireParams{
			Now:   now,
			Limit: fireBatch,
			Plan: func(d DueSchedule) FirePlan {
				if budget <= 0 {
					// Deferred to the next batch: nothing fires and the
					// tick stays due. Rows come oldest tick first and every
					// batch fires at least one schedule, so this ends.
					behind = true
					return FirePlan{Next: d.NextFireAt}
				}
				p := s.plan(ctx, d, now)
				budget -= len(p.Ticks)
				behind = behind || (!p.Next.IsZero() && !p.Next.After(now))
				return p
			},
		})
		if err != nil {
			return time.Time{}, err
		}
		if n < fireBatch && !behind {
			break
		}
	}
	return s.store.NextScheduleFire(ctx)
}

func (s *Service) plan(ctx context.Context, d DueSchedule, now time.Time) FirePlan {
	spec, err := s.compileSpec(d.Schedule)
	if err != nil {
		// Validated when stored, so only a changed parser gets here. Stop
		// the schedule rather than retry it forever; GetSchedule shows it
		// has no next tick.
		s.log.ErrorContext(ctx, "schedule has an unusable spec; it stops", "schedule", d.Name, "err", err)
		return FirePlan{}
	}
	p := planTicks(spec, d, now, s.cfg.ScheduleMisfireGrace)
	if len(p.Ticks) == 0 {
		s.log.InfoContext(ctx, "schedule tick skipped", "schedule", d.Name, "tick", d.NextFireAt,
			"catch_up", string(d.CatchUp), "overlap", string(d.Overlap))
	}
	return p
}

// planTicks applies a schedule's catch-up and overlap policies to the ticks
// due at now, starting with d.NextFireAt. It is pure, so every replica that
// gets the row lock plans the same.
//
// A tick is on time when it is at most grace old; older ticks are missed.
// On-time ticks fire under every catch-up policy. Missed ticks are dropped
// (skip), stand together for one job (one), or fire each while within the
// catch-up window (all). Under overlap skip nothing fires while the previous
// job is unfinished, and at most one tick fires per firing (the first; the
// others would overlap it).
func planTicks(spec ScheduleSpec, d DueSchedule, now time.Time, grace time.Duration) FirePlan {
	horizon := now.Add(-grace)
	if d.CatchUp == CatchUpAll {
		horizon = now.Add(-max(d.CatchUpWindow, grace))
	}
	var ticks []time.Time
	cur := d.NextFireAt
	if cur.Before(horizon) {
		// Walk the missed ticks for CatchUpOne's label; jump over them for
		// the other policies.
		if d.CatchUp == CatchUpOne {
			latest := cur
			for i := 0; i < maxMissedScan && !cur.IsZero() && cur.Before(horizon); i++ {
				latest, cur = cur, spec.Next(cur)
			}
			ticks = append(ticks, latest)
		}
		if !cur.IsZero() && cur.Before(horizon) {
			cur = spec.Next(horizon.Add(-time.Nanosecond))
		}
	}
	for !cur.IsZero() && !cur.After(now) && len(ticks) < maxTicksPerFire {
		ticks = append(ticks, cur)
		cur = spec.Next(cur)
	}
	if d.Overlap == OverlapSkip && (d.LastJobUnfinished || len(ticks) > 1) {
		if d.LastJobUnfinished {
			ticks = nil
		} else {
			ticks = ticks[:1]
		}
		for !cur.IsZero() && !cur.After(now) {
			cur = spec.Next(cur)
		}
	}
	return FirePlan{Ticks: ticks, Next: cur}
}

func (s *Service) pruneFiredTicks(ctx context.Context) {
	before := s.now().Add(-s.cfg.Retention)
	for ctx.Err() == nil {
		n, err := s.store.DeleteFiredTicks(ctx, before, maintenanceBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Log(ctx, logLevelFor(err), "forget old fired ticks", "err", err)
			}
			return
		}
		if n < maintenanceBatch {
			return
		}
	}
}

package service

import (
	"context"
	"time"
)

const maintenanceBatch = 1000

// wakePromoter makes the promoter look for due scheduled jobs now.
func (s *Service) wakePromoter() {
	select {
	case s.promoterWake <- struct{}{}:
	default:
	}
}

// runPromoter makes scheduled jobs available when their run_at comes. It
// sleeps until the next due job (or at most a sweep interval, since another
// replica may have scheduled something earlier) and wakes early when this
// replica schedules a job.
func (s *Service) runPromoter(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.promoterWake:
		}
		wait := s.cfg.SweepInterval
		for ctx.Err() == nil {
			n, next, err := s.store.PromoteScheduled(ctx, s.now(), maintenanceBatch)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Log(ctx, logLevelFor(err), "promote scheduled jobs", "err", err)
				}
				break
			}
			if n == maintenanceBatch {
				continue // more are due
			}
			if !next.IsZero() {
				wait = min(wait, max(next.Sub(s.now()), time.Millisecond))
			}
			break
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

// runSweeper takes back expired leases, ends the wait of flow parents whose
// children deadline passed, and deletes finished jobs past their retention,
// every sweep interval.
func (s *Service) runSweeper(ctx context.Context) {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.Sweep(ctx)
	}
}

// Sweep runs one round of lease expiry and cleanup. It is exported so that
// tests driving a fake clock need not wait for the ticker.
func (s *Service) Sweep(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := s.store.ExpireLeases(ctx, s.now(), maintenanceBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Log(ctx, logLevelFor(err), "expire leases", "err", err)
			}
			break
		}
		if n > 0 {
			s.log.InfoContext(ctx, "took back expired leases", "count", n)
		}
		if n < maintenanceBatch {
			break
		}
	}
	for ctx.Err() == nil {
		n, err := s.store.ExpireChildDeadlines(ctx, s.now(), maintenanceBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Log(ctx, logLevelFor(err), "expire children deadlines", "err", err)
			}
			break
		}
		if n > 0 {
			s.log.InfoContext(ctx, "parents stopped waiting for their children: deadline passed", "count", n)
		}
		if n < maintenanceBatch {
			break
		}
	}
	cutoff := s.now().Add(-s.cfg.Retention)
	for ctx.Err() == nil {
		n, err := s.store.DeleteFinished(ctx, cutoff, maintenanceBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Log(ctx, logLevelFor(err), "delete finished jobs", "err", err)
			}
			break
		}
		if n < maintenanceBatch {
			break
		}
	}
}

package metrics

import (
	"context"
	"time"

	"github.com/queued-dev/queued/service"
)

// ObserveStore wraps the service's storage port so that every write the
// service makes is counted where it happens: one place, no hooks in the
// service's hot paths. Methods it does not override pass straight through
// (the interface is embedded), so the port may grow without touching this.
func (m *Metrics) ObserveStore(s service.Store) service.Store {
	return &observedStore{Store: s, m: m}
}

type observedStore struct {
	service.Store
	m *Metrics
}

func (o *observedStore) InsertJobs(ctx context.Context, jobs []service.NewJob) ([]service.EnqueuedJob, error) {
	start := time.Now()
	out, err := o.Store.InsertJobs(ctx, jobs)
	o.m.observeBatch("insert", len(jobs), start, err)
	if err == nil {
		for i, e := range out {
			if e.Duplicate {
				o.m.duplicates.WithLabelValues(jobs[i].Queue).Inc()
			} else {
				o.m.enqueued.WithLabelValues(jobs[i].Queue).Inc()
			}
		}
	}
	return out, err
}

func (o *observedStore) ClaimJobs(ctx context.Context, p service.ClaimParams) ([]service.ClaimedJob, error) {
	start := time.Now()
	out, err := o.Store.ClaimJobs(ctx, p)
	o.m.observeBatch("claim", len(out), start, err)
	return out, err
}

func (o *observedStore) CompleteJobs(ctx context.Context, acks []service.Completion, now time.Time) ([]error, error) {
	start := time.Now()
	errs, err := o.Store.CompleteJobs(ctx, acks, now)
	o.m.observeBatch("ack", len(acks), start, err)
	if err == nil {
		for _, e := range errs {
			if e == nil {
				o.m.completed.Inc()
			} else {
				o.m.ackLost.Inc()
			}
		}
	}
	return errs, err
}

func (o *observedStore) FailAttempt(ctx context.Context, p service.FailParams) (service.Job, error) {
	job, err := o.Store.FailAttempt(ctx, p)
	if err == nil {
		switch job.State {
		case service.StateFailed:
			o.m.failed.WithLabelValues(job.Queue).Inc()
		case service.StateScheduled, service.StateAvailable:
			o.m.retried.WithLabelValues(job.Queue).Inc()
		}
	}
	return job, err
}

func (o *observedStore) ReleaseJobs(ctx context.Context, refs []service.LeaseRef, now time.Time) ([]int64, error) {
	ids, err := o.Store.ReleaseJobs(ctx, refs, now)
	o.m.countError("release", err)
	o.m.released.Add(float64(len(ids)))
	return ids, err
}

func (o *observedStore) AbandonJobs(ctx context.Context, refs []service.LeaseRef, reason string, now time.Time) (int, error) {
	n, err := o.Store.AbandonJobs(ctx, refs, reason, now)
	o.m.countError("abandon", err)
	o.m.abandoned.Add(float64(n))
	return n, err
}

func (o *observedStore) ExpireLeases(ctx context.Context, now time.Time, limit int) (int, error) {
	n, err := o.Store.ExpireLeases(ctx, now, limit)
	o.m.countError("expire", err)
	o.m.leaseExpired.Add(float64(n))
	return n, err
}

func (o *observedStore) PromoteScheduled(ctx context.Context, now time.Time, limit int) (int, time.Time, error) {
	n, next, err := o.Store.PromoteScheduled(ctx, now, limit)
	o.m.countError("promote", err)
	o.m.promoted.Add(float64(n))
	return n, next, err
}

func (o *observedStore) DeleteFinished(ctx context.Context, before time.Time, limit int) (int, error) {
	n, err := o.Store.DeleteFinished(ctx, before, limit)
	o.m.countError("delete", err)
	o.m.deleted.Add(float64(n))
	return n, err
}

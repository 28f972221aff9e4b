package main

import (
	"context"
	"fmt"
	"time"
)

// benchConfig sizes the scenarios. The defaults are the short version
// (`make bench`, a few minutes); -full sets BENCHMARKS.md's sizes.
type benchConfig struct {
	Jobs            int           // S1 and S2 job count
	BatchCallers    int           // concurrent callers for S1 batches and S2 pre-enqueue
	Duration        time.Duration // S3 and S4 length per rate
	Rates           []float64     // S3 rates; 0 means max (closed loop)
	MaxCallers      int           // concurrent single-job callers for "max"
	Workers         int           // worker connections for S3-S6
	Window          int           // their window
	S4Rows          int           // scheduled rows and finished rows each
	S4Rate          float64
	S4Due           int
	S5Duration      time.Duration
	S5Hold          time.Duration
	S5Rate          float64 // 0: closed loop
	S6Leases        int
	S6Rate          float64
	S6Duration      time.Duration
	MaxRate         float64 // upper bound used to size recorders for "max"
	DrainTimeout    time.Duration
	S2Variants      [][2]int // {worker connections, window}
	S1Single1Jobs   int      // jobs for the single caller variant (it is slow)
	CeilingDuration time.Duration
	S7Schedules     int           // cron schedules
	S7Spec          string        // their spec
	S7Ticks         int           // ticks measured
	S7FlowRate      float64       // flows per second
	S7Duration      time.Duration // flow run length
}

type bench struct {
	e   *env
	cfg benchConfig
	out func(result)
	log func(format string, args ...any)
	run int // distinct queue per run

	benchDir string // the pgbench scripts of the ceilings
}

func (b *bench) queue() string {
	b.run++
	return fmt.Sprintf("bench-%d", b.run)
}

// finalCheck adds what the database says to a run's check: jobs of queue
// in a state other than completed were not finished.
func (b *bench) unfinished(ctx context.Context, queue string) (int64, error) {
	var n int64
	err := b.e.pool.QueryRow(ctx, `SELECT count(*) FROM queued_jobs WHERE queue = $1 AND state <> 'completed'`, queue).Scan(&n)
	return n, err
}

// S1: the producer path. No workers; latency is the Enqueue call's.
func (b *bench) s1(ctx context.Context) {
	variants := []struct {
		name           string
		callers, batch int
		jobs           int
	}{
		{"single x1", 1, 1, b.cfg.S1Single1Jobs},
		{"single x32", 32, 1, b.cfg.Jobs},
		{fmt.Sprintf("batch100 x%d", b.cfg.BatchCallers), b.cfg.BatchCallers, 100, b.cfg.Jobs},
		{fmt.Sprintf("batch1000 x%d", b.cfg.BatchCallers), b.cfg.BatchCallers, 1000, b.cfg.Jobs},
	}
	for _, v := range variants {
		r := result{Scenario: "S1", Variant: v.name}
		err := func() error {
			if err := b.e.reset(ctx); err != nil {
				return err
			}
			q := b.queue()
			rec := newRecorder(v.jobs, 0, false)
			p, err := newProducer(b.e, 4, q, rec, v.jobs)
			if err != nil {
				return err
			}
			defer p.close()
			m, err := b.e.startMeter(ctx)
			if err != nil {
				return err
			}
			start := time.Now()
			perr := p.closedLoop(ctx, v.callers, v.batch, time.Time{})
			elapsed := time.Since(start)
			if err := m.finish(ctx, &r, rec.enqCount.Load(), elapsed); err != nil {
				return err
			}
			r.setLatency("enqueue_rpc", p.rpcLatencies())
			var rows int64
			if err := b.e.pool.QueryRow(ctx, `SELECT count(*) FROM queued_jobs WHERE queue = $1`, q).Scan(&rows); err != nil {
				return err
			}
			// Exactly once for a producer: every acknowledged job is a row,
			// and no row is extra.
			r.Check = check{Enqueued: rec.enqCount.Load(), WorkedOnce: min(rows, rec.enqCount.Load())}
			r.Check.Lost = max(0, rec.enqCount.Load()-rows)
			r.Check.Duplicates = max(0, rows-rec.enqCount.Load())
			r.ExactlyOnce = r.Check.ok() && perr == nil
			r.extra("jobs_table_rows", rows)
			return perr
		}()
		b.emit(r, err)
	}
}

// S2: drain a backlog with streaming workers.
func (b *bench) s2(ctx context.Context) {
	for _, v := range b.cfg.S2Variants {
		r := result{Scenario: "S2", Variant: fmt.Sprintf("%d workers x window %d", v[0], v[1])}
		err := func() error {
			if err := b.e.reset(ctx); err != nil {
				return err
			}
			q := b.queue()
			rec := newRecorder(b.cfg.Jobs, 0, false)
			p, err := newProducer(b.e, 2, q, rec, b.cfg.Jobs)
			if err != nil {
				return err
			}
			err = p.closedLoop(ctx, b.cfg.BatchCallers, 1000, time.Time{})
			p.close()
			if err != nil {
				return err
			}
			// Let autovacuum and the checkpointer see the backlog before
			// the clock starts, as they would for a real backlog.
			if _, err := b.e.pool.Exec(ctx, `VACUUM ANALYZE queued_jobs`); err != nil {
				return err
			}
			m, err := b.e.startMeter(ctx)
			if err != nil {
				return err
			}
			start := time.Now()
			ws, err := startWorkers(ctx, b.e, v[0], workerParams{Queue: q, Window: v[1], Rec: rec})
			if err != nil {
				return err
			}
			drained := waitDelivered(ctx, rec, b.cfg.Jobs, b.cfg.DrainTimeout)
			werr := stopWorkers(ws)
			elapsed := time.Since(start)
			return b.finishWorked(ctx, m, &r, rec, q, b.cfg.Jobs, elapsed, drained, werr)
		}()
		b.emit(r, err)
	}
}

// finishWorked completes a run that had workers: resource figures, the
// exactly-once check from the recorder and the table.
func (b *bench) finishWorked(ctx context.Context, m *meter, r *result, rec *recorder, q string, n int, elapsed time.Duration, drained bool, werr error) error {
	c := rec.check(n)
	if err := m.finish(ctx, r, c.WorkedOnce+c.Duplicates, elapsed); err != nil {
		return err
	}
	if r.LatencyOf == "" {
		r.setLatency("enqueue_to_start", rec.latencies())
	}
	left, err := b.unfinished(ctx, q)
	if err != nil {
		return err
	}
	r.Check = c
	r.ExactlyOnce = c.ok() && left == 0 && drained && werr == nil
	if left > 0 {
		r.extra("unfinished_rows", left)
	}
	if !drained {
		return fmt.Errorf("not every job was received within %v", b.cfg.DrainTimeout)
	}
	return werr
}

// steady runs single-job Enqueue at rate (0: closed loop with MaxCallers)
// for d against running workers, the queue kept near empty. It is S3's
// body and S4's and S5's too.
type steadyRun struct {
	rate     float64
	d        time.Duration
	timeline bool
	during   func(ctx context.Context, rec *recorder) // runs beside the load, may be nil
	lease    time.Duration
	unique   bool
}

func (b *bench) steady(ctx context.Context, r *result, sr steadyRun) (*recorder, error) {
	q := b.queue()
	capacity := int(max(sr.rate, b.cfg.MaxRate)*sr.d.Seconds()*1.2) + 1000
	rec := newRecorder(capacity, int(sr.d.Seconds())+int(b.cfg.DrainTimeout.Seconds())+2, sr.timeline)
	ws, err := startWorkers(ctx, b.e, b.cfg.Workers, workerParams{Queue: q, Window: b.cfg.Window, Rec: rec, LeaseDuration: sr.lease})
	if err != nil {
		return nil, err
	}
	p, err := newProducer(b.e, 4, q, rec, capacity)
	if err != nil {
		stopWorkers(ws)
		return nil, err
	}
	defer p.close()
	p.uniqueKey = sr.unique
	m, err := b.e.startMeter(ctx)
	if err != nil {
		stopWorkers(ws)
		return nil, err
	}
	side := make(chan struct{})
	go func() {
		defer close(side)
		if sr.during != nil {
			sr.during(ctx, rec)
		}
	}()
	var perr error
	if sr.rate > 0 {
		var achieved float64
		achieved, perr = p.openLoop(ctx, sr.rate, sr.d, 256)
		r.extra("offered_rate", fmt.Sprintf("%.0f", achieved))
	} else {
		perr = p.closedLoop(ctx, b.cfg.MaxCallers, 1, time.Now().Add(sr.d))
	}
	drained := waitDelivered(ctx, rec, capacity, b.cfg.DrainTimeout)
	<-side
	if sr.lease > 0 {
		// Acks lost (e.g. in a database restart) come back when their
		// short lease expires: wait for those redeliveries.
		for deadline := time.Now().Add(b.cfg.DrainTimeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if n, err := b.unfinished(ctx, q); err == nil && n == 0 {
				break
			}
		}
	}
	werr := stopWorkers(ws)
	elapsed := time.Duration(rec.lastStart.Load())
	if p.errs.Load() > 0 {
		r.extra("enqueue_errors", p.errs.Load())
	}
	if err := b.finishWorked(ctx, m, r, rec, q, capacity, elapsed, drained, werr); err != nil {
		return rec, err
	}
	if perr != nil && !sr.unique {
		return rec, perr
	}
	return rec, nil
}

// S3: steady state at fixed rates and at the maximum.
func (b *bench) s3(ctx context.Context) {
	for _, rate := range b.cfg.Rates {
		name := fmt.Sprintf("%.0f/s", rate)
		if rate == 0 {
			name = fmt.Sprintf("max (%d callers)", b.cfg.MaxCallers)
		}
		r := result{Scenario: "S3", Variant: name}
		err := b.e.reset(ctx)
		if err == nil {
			_, err = b.steady(ctx, &r, steadyRun{rate: rate, d: b.cfg.Duration})
		}
		b.emit(r, err)
	}
}

func (b *bench) emit(r result, err error) {
	if r.Scenario != "C" && r.Scenario != "S1" {
		r.Worker = b.e.cfg.Worker
	}
	if err != nil {
		r.Error = err.Error()
		r.ExactlyOnce = false
	}
	b.out(r)
}

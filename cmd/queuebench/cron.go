package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	queued "github.com/queued-dev/queued/clients/go"
)

// S7 cron: BENCHMARKS.md's "1,000 cron schedules firing each minute". The
// schedules are created through the ScheduleService (the Go SDK); every
// job a tick enqueues carries its schedule and tick in its metadata, so the
// worker can tell how late after its tick it started, and the table how
// late it was enqueued. The check: every schedule enqueued exactly one job
// for every tick of the window, and every job was worked exactly once.

// cronJob is what the worker saw of one scheduled job.
type cronJob struct {
	schedule string
	tick     time.Time
	starts   []time.Time // one per delivery
}

// cronRecorder keeps every scheduled job the workers received, by id.
type cronRecorder struct {
	mu        sync.Mutex
	jobs      map[int64]*cronJob
	ackErrors atomic.Int64
}

func newCronRecorder() *cronRecorder {
	return &cronRecorder{jobs: map[int64]*cronJob{}}
}

func (c *cronRecorder) onJob(j leasedJob) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	cj := c.jobs[j.ID]
	if cj == nil {
		tick, _ := time.Parse(time.RFC3339Nano, j.Metadata["queued.tick"])
		cj = &cronJob{schedule: j.Metadata["queued.schedule"], tick: tick}
		c.jobs[j.ID] = cj
	}
	cj.starts = append(cj.starts, now)
}

// receivedThrough counts the distinct jobs received whose tick is at or
// before end.
func (c *cronRecorder) receivedThrough(end time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, j := range c.jobs {
		if !j.tick.After(end) {
			n++
		}
	}
	return n
}

func (c *cronRecorder) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.jobs)
}

// cronPlan is the window of ticks S7 measures. The schedules share one
// spec, so they share one sequence of ticks; a schedule created after a
// tick passed starts at the next one.
type cronPlan struct {
	first map[string]time.Time // each schedule's first tick
	ticks []time.Time          // the spec's ticks from the earliest first tick to end
	end   time.Time            // the last tick measured
}

// expected reports whether schedule s must fire tick t.
func (p cronPlan) expected(s string, t time.Time) bool {
	first, ok := p.first[s]
	return ok && !t.Before(first) && !t.After(p.end) && slices.ContainsFunc(p.ticks, t.Equal)
}

func (p cronPlan) expectedJobs() int {
	n := 0
	for _, first := range p.first {
		for _, t := range p.ticks {
			if !t.Before(first) {
				n++
			}
		}
	}
	return n
}

func (b *bench) s7Cron(ctx context.Context) {
	r := result{Scenario: "S7", Variant: fmt.Sprintf("cron %d schedules %q, %d ticks", b.cfg.S7Schedules, b.cfg.S7Spec, b.cfg.S7Ticks)}
	b.emit(r, b.cron(ctx, &r))
}

func (b *bench) cron(ctx context.Context, r *result) (err error) {
	if err := b.e.reset(ctx); err != nil {
		return err
	}
	q := b.queue()
	client, err := queued.Dial(ctx, b.e.addr)
	if err != nil {
		return err
	}
	defer client.Close()
	rec := newCronRecorder()
	ws, err := startWorkers(ctx, b.e, b.cfg.Workers, workerParams{Queue: q, Window: b.cfg.Window, OnJob: rec.onJob, AckErrors: &rec.ackErrors})
	if err != nil {
		return err
	}
	workersUp := true
	defer func() {
		if workersUp {
			stopWorkers(ws)
		}
	}()

	created := time.Now()
	names, cerr := createSchedules(ctx, client, q, b.cfg.S7Spec, b.cfg.S7Schedules)
	deleted := false
	defer func() {
		if !deleted {
			if derr := deleteSchedules(context.WithoutCancel(ctx), client, names); err == nil {
				err = derr
			}
		}
	}()
	if cerr != nil {
		return cerr
	}
	r.extra("create_s", fmt.Sprintf("%.1f", time.Since(created).Seconds()))
	plan, err := planCron(ctx, client, names, b.cfg.S7Ticks)
	if err != nil {
		return err
	}
	want := plan.expectedJobs()

	// The clock (and CPU) starts a second before the first tick.
	if d := time.Until(plan.ticks[0].Add(-time.Second)); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m, err := b.e.startMeter(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	deadline := plan.end.Add(b.cfg.DrainTimeout)
	for rec.receivedThrough(plan.end) < want && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)

	deleting := time.Now()
	deleted = true
	if err := deleteSchedules(ctx, client, names); err != nil {
		return err
	}
	r.extra("delete_s", fmt.Sprintf("%.1f", time.Since(deleting).Seconds()))
	// A tick past the window may have fired before the deletes: let the
	// workers take its jobs too, so that every job in the table is checked.
	for wait := time.Now().Add(10 * time.Second); time.Now().Before(wait); time.Sleep(20 * time.Millisecond) {
		var rows int
		if err := b.e.pool.QueryRow(ctx, `SELECT count(*) FROM queued_jobs WHERE queue = $1`, q).Scan(&rows); err != nil {
			return err
		}
		if rec.distinct() >= rows {
			break
		}
	}
	workersUp = false
	werr := stopWorkers(ws)

	rec.mu.Lock()
	deliveries := int64(0)
	for _, j := range rec.jobs {
		deliveries += int64(len(j.starts))
	}
	rec.mu.Unlock()
	if err := m.finish(ctx, r, deliveries, elapsed); err != nil {
		return err
	}
	left, err := b.unfinished(ctx, q)
	if err != nil {
		return err
	}
	if err := b.analyseCron(ctx, r, q, plan, rec); err != nil {
		return err
	}
	if left > 0 {
		r.extra("unfinished_rows", left)
	}
	r.ExactlyOnce = r.Check.ok() && left == 0 && werr == nil
	if r.Check.Lost > 0 && time.Now().After(deadline) {
		return fmt.Errorf("not every tick's job was received within %v of the last tick", b.cfg.DrainTimeout)
	}
	return werr
}

// createSchedules upserts n schedules named after queue, a few at a time,
// as a deploy script would.
func createSchedules(ctx context.Context, c *queued.Client, queue, spec string, n int) ([]string, error) {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%04d", queue, i)
	}
	err := inParallel(8, names, func(name string) error {
		_, err := c.UpsertSchedule(ctx, queued.Schedule{
			Name: name, Spec: spec,
			Job: queued.ScheduleJob{Queue: queue, Name: "tick", Payload: make([]byte, payloadSize)},
		})
		return err
	})
	return names, err
}

func deleteSchedules(ctx context.Context, c *queued.Client, names []string) error {
	return inParallel(8, names, func(name string) error {
		err := c.DeleteSchedule(ctx, name)
		if queued.IsNotFound(err) {
			return nil // never created
		}
		return err
	})
}

// inParallel calls f for every item from n goroutines and returns the
// first error.
func inParallel(n int, items []string, f func(string) error) error {
	next := atomic.Int64{}
	var first atomic.Value
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(items) {
					return
				}
				if err := f(items[i]); err != nil {
					first.CompareAndSwap(nil, err)
				}
			}
		})
	}
	wg.Wait()
	if err, ok := first.Load().(error); ok {
		return err
	}
	return nil
}

// planCron reads every schedule's first tick and the spec's sequence of
// ticks from the server, and ends the window ticks ticks after the first
// tick that every schedule has.
func planCron(ctx context.Context, c *queued.Client, names []string, ticks int) (cronPlan, error) {
	p := cronPlan{first: map[string]time.Time{}}
	list, err := c.ListSchedules(ctx)
	if err != nil {
		return p, err
	}
	ours := map[string]bool{}
	for _, n := range names {
		ours[n] = true
	}
	var earliest string
	var latest time.Time
	for _, s := range list {
		if !ours[s.Name] {
			continue
		}
		if s.NextFireAt.IsZero() {
			return p, fmt.Errorf("schedule %s has no next tick", s.Name)
		}
		p.first[s.Name] = s.NextFireAt
		if earliest == "" || s.NextFireAt.Before(p.first[earliest]) {
			earliest = s.Name
		}
		if s.NextFireAt.After(latest) {
			latest = s.NextFireAt
		}
	}
	if len(p.first) != len(names) {
		return p, fmt.Errorf("listed %d of the %d schedules created", len(p.first), len(names))
	}
	_, seq, err := c.GetSchedule(ctx, earliest, 100)
	if err != nil {
		return p, err
	}
	i := slices.IndexFunc(seq, latest.Equal)
	if i < 0 || i+ticks > len(seq) {
		return p, errors.New("the schedules' first ticks lie too far apart (or -s7-ticks is too large) to share a window of the next 100 ticks")
	}
	p.ticks = seq[:i+ticks]
	p.end = p.ticks[len(p.ticks)-1]
	return p, nil
}

// analyseCron reads every job of the run from the table and checks it
// against the plan and the workers' record; it reports the jitter of the
// window's jobs: tick to enqueue (created_at, the time the scheduler
// began the firing transaction) and tick to start (the worker received it).
func (b *bench) analyseCron(ctx context.Context, r *result, queue string, plan cronPlan, rec *cronRecorder) error {
	rows, err := b.e.pool.Query(ctx, `SELECT id, coalesce(metadata->>'queued.schedule', ''), coalesce(metadata->>'queued.tick', ''), created_at
		FROM queued_jobs WHERE queue = $1`, queue)
	if err != nil {
		return err
	}
	type pair struct {
		schedule string
		tick     int64
	}
	type row struct {
		id      int64
		tick    time.Time
		created time.Time
	}
	byPair := map[pair][]row{}
	for rows.Next() {
		var x row
		var s, label string
		if err := rows.Scan(&x.id, &s, &label, &x.created); err != nil {
			return err
		}
		x.tick, _ = time.Parse(time.RFC3339Nano, label)
		k := pair{s, x.tick.UnixNano()}
		byPair[k] = append(byPair[k], x)
	}
	if err := rows.Err(); err != nil {
		return err
	}

	rec.mu.Lock()
	defer rec.mu.Unlock()
	var c check
	var toEnqueue, toStart []int64
	perTick := map[int64]int{}
	span := map[int64][2]time.Time{} // first and last created_at per tick
	inTable := map[int64]bool{}
	afterWindow := 0
	worked := func(id int64) int {
		if j := rec.jobs[id]; j != nil {
			return len(j.starts)
		}
		return 0
	}
	for k, xs := range byPair {
		for _, x := range xs {
			inTable[x.id] = true
		}
		if !plan.expected(k.schedule, time.Unix(0, k.tick)) {
			if _, ours := plan.first[k.schedule]; ours && time.Unix(0, k.tick).After(plan.end) {
				// Fired past the window before the deletes: at most one
				// job, worked once, is still required.
				afterWindow += len(xs)
				c.Duplicates += int64(len(xs) - 1)
				for _, x := range xs {
					if d := worked(x.id); d == 0 {
						c.Lost++
					} else {
						c.Duplicates += int64(d - 1)
					}
				}
				continue
			}
			c.Unexpected += int64(len(xs))
			continue
		}
		c.Duplicates += int64(len(xs) - 1)
		for _, x := range xs {
			perTick[k.tick]++
			sp, ok := span[k.tick]
			if !ok || x.created.Before(sp[0]) {
				sp[0] = x.created
			}
			if !ok || x.created.After(sp[1]) {
				sp[1] = x.created
			}
			span[k.tick] = sp
			toEnqueue = append(toEnqueue, int64(x.created.Sub(x.tick)))
			d := worked(x.id)
			if d == 0 {
				continue // counted as lost below
			}
			c.Duplicates += int64(d - 1)
			toStart = append(toStart, int64(rec.jobs[x.id].starts[0].Sub(x.tick)))
		}
	}
	for s, first := range plan.first {
		for _, t := range plan.ticks {
			if t.Before(first) {
				continue
			}
			c.Enqueued++
			xs := byPair[pair{s, t.UnixNano()}]
			switch {
			case len(xs) == 0 || worked(xs[0].id) == 0:
				c.Lost++
			case len(xs) == 1 && worked(xs[0].id) == 1:
				c.WorkedOnce++
			}
		}
	}
	for id, j := range rec.jobs {
		if !inTable[id] {
			c.Unexpected += int64(len(j.starts))
		}
	}
	c.AckErrors = rec.ackErrors.Load()
	r.Check = c

	r.setLatency("tick_to_start", toStart)
	enq := quantilesOf(toEnqueue)
	r.extra("tick_to_enqueue_ms", fmt.Sprintf("p50 %.1f p95 %.1f p99 %.1f max %.1f", enq.P50, enq.P95, enq.P99, enq.Max))
	var counts []string
	var maxSpan time.Duration
	for _, t := range plan.ticks {
		counts = append(counts, fmt.Sprintf("%s=%d", t.UTC().Format("15:04:05"), perTick[t.UnixNano()]))
		if sp, ok := span[t.UnixNano()]; ok {
			maxSpan = max(maxSpan, sp[1].Sub(sp[0]))
		}
	}
	fired := 0
	for _, t := range plan.ticks {
		if perTick[t.UnixNano()] > 0 {
			fired++
		}
	}
	r.extra("ticks_fired", fired)
	r.extra("jobs_per_tick", strings.Join(counts, ","))
	r.extra("fire_span_ms", fmt.Sprintf("%.1f", float64(maxSpan)/1e6)) // first to last created_at of one tick
	if afterWindow > 0 {
		r.extra("jobs_after_window", afterWindow)
	}
	return nil
}

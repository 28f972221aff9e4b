package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// fillScheduledSQL and fillFinishedSQL add @rows scheduled jobs due
// tomorrow and @rows completed jobs (inside the retention period) to queue
// @queue: the dead weight S4 runs over.
const fillScheduledSQL = `
INSERT INTO queued_jobs (queue, name, payload, state, max_attempts, run_at, created_at)
SELECT @queue, 'noop', decode(repeat('00', 100), 'hex'), 'scheduled', 5,
       now() + interval '1 day' + i * interval '1 ms', now()
FROM generate_series(1, @rows::int) i`

const fillFinishedSQL = `
INSERT INTO queued_jobs (queue, name, payload, state, attempt, max_attempts, run_at, created_at, started_at, finished_at)
SELECT @queue, 'noop', decode(repeat('00', 100), 'hex'), 'completed', 1, 5, now(), now(), now(), now()
FROM generate_series(1, @rows::int) i`

// S4: S3 at a fixed rate over a big table, against the same rate over an
// empty one; then many jobs due in the same second.
func (b *bench) s4(ctx context.Context) {
	base := result{Scenario: "S4", Variant: fmt.Sprintf("%.0f/s empty table", b.cfg.S4Rate)}
	err := b.e.reset(ctx)
	if err == nil {
		_, err = b.steady(ctx, &base, steadyRun{rate: b.cfg.S4Rate, d: b.cfg.Duration})
	}
	b.emit(base, err)

	r := result{Scenario: "S4", Variant: fmt.Sprintf("%.0f/s over %d scheduled + %d finished", b.cfg.S4Rate, b.cfg.S4Rows, b.cfg.S4Rows)}
	err = func() error {
		if err := b.e.reset(ctx); err != nil {
			return err
		}
		start := time.Now()
		for _, sql := range []string{fillScheduledSQL, fillFinishedSQL} {
			if _, err := b.e.pool.Exec(ctx, sql, pgx.NamedArgs{"queue": "filler", "rows": b.cfg.S4Rows}); err != nil {
				return fmt.Errorf("fill: %w", err)
			}
		}
		if _, err := b.e.pool.Exec(ctx, `VACUUM ANALYZE queued_jobs`); err != nil {
			return err
		}
		if err := b.e.checkpoint(ctx); err != nil {
			return err
		}
		r.extra("fill_s", fmt.Sprintf("%.1f", time.Since(start).Seconds()))
		_, err := b.steady(ctx, &r, steadyRun{rate: b.cfg.S4Rate, d: b.cfg.Duration})
		return err
	}()
	if err == nil && base.Jobs > 0 && r.Jobs > 0 && base.P99 > 0 {
		cpu := func(x result) float64 { return (x.CPUPostgres + x.CPUQueued) / float64(x.Jobs) }
		r.extra("p99_vs_empty", fmt.Sprintf("%.2f", r.P99/base.P99))
		r.extra("server_cpu_per_job_vs_empty", fmt.Sprintf("%.2f", cpu(r)/cpu(base)))
	}
	b.emit(r, err)

	d := result{Scenario: "S4", Variant: fmt.Sprintf("%d due in one second", b.cfg.S4Due)}
	err = b.dueAtOnce(ctx, &d)
	b.emit(d, err)
}

// dueAtOnce enqueues S4Due jobs all due at the same instant (over the table
// S4 filled) and measures how late after that instant each one starts.
func (b *bench) dueAtOnce(ctx context.Context, r *result) error {
	q := b.queue()
	n := b.cfg.S4Due
	rec := newRecorder(n, 0, false)
	ws, err := startWorkers(ctx, b.e, b.cfg.Workers, workerParams{Queue: q, Window: b.cfg.Window, Rec: rec})
	if err != nil {
		return err
	}
	p, err := newProducer(b.e, 2, q, rec, n)
	if err != nil {
		stopWorkers(ws)
		return err
	}
	defer p.close()
	p.runAt = time.Now().Truncate(time.Second).Add(3 * time.Second)
	m, err := b.e.startMeter(ctx)
	if err != nil {
		stopWorkers(ws)
		return err
	}
	start := time.Now()
	if err := p.closedLoop(ctx, b.cfg.BatchCallers, 1000, time.Time{}); err != nil {
		stopWorkers(ws)
		return err
	}
	if time.Now().After(p.runAt) {
		r.extra("warning", "enqueueing took past the due time")
	}
	drained := waitDelivered(ctx, rec, n, b.cfg.DrainTimeout)
	werr := stopWorkers(ws)
	r.setLatency("due_to_start", rec.latencies())
	if err := b.finishWorked(ctx, m, r, rec, q, n, time.Since(start), drained, werr); err != nil {
		return err
	}
	r.extra("all_started_within_1s", r.Max <= 1000)
	return nil
}

// S5: steady load with one transaction held open in the middle, holding
// back the xmin horizon so that vacuum can remove nothing.
func (b *bench) s5(ctx context.Context) {
	rate := "max"
	if b.cfg.S5Rate > 0 {
		rate = fmt.Sprintf("%.0f/s", b.cfg.S5Rate)
	}
	r := result{Scenario: "S5", Variant: fmt.Sprintf("%s for %v, tx open %v", rate, b.cfg.S5Duration, b.cfg.S5Hold)}
	holdStart := (b.cfg.S5Duration - b.cfg.S5Hold) / 2
	holdEnd := holdStart + b.cfg.S5Hold
	var deadAtHoldEnd int64
	var holdErr error
	during := func(ctx context.Context, rec *recorder) {
		holdErr = func() error {
			time.Sleep(holdStart)
			conn, err := b.e.pool.Acquire(ctx)
			if err != nil {
				return err
			}
			defer conn.Release()
			tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
			if err != nil {
				return err
			}
			defer tx.Rollback(context.WithoutCancel(ctx))
			// An xid and a snapshot: both hold back what vacuum may remove.
			var n int64
			if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()::text::bigint + (SELECT count(*) FROM queued_jobs)`).Scan(&n); err != nil {
				return err
			}
			time.Sleep(b.cfg.S5Hold)
			ts, err := takeTableStats(ctx, b.e.pool)
			deadAtHoldEnd = ts.DeadTuples
			return err
		}()
	}
	err := b.e.reset(ctx)
	var rec *recorder
	if err == nil {
		rec, err = b.steady(ctx, &r, steadyRun{rate: b.cfg.S5Rate, d: b.cfg.S5Duration, timeline: true, during: during})
	}
	if err == nil {
		err = holdErr
	}
	if rec != nil {
		analyseHold(&r, rec, holdStart, holdEnd, b.cfg.S5Duration)
		r.extra("dead_tuples_at_tx_end", deadAtHoldEnd)
	}
	b.emit(r, err)
}

// analyseHold compares throughput and latency before, during and after the
// held transaction, per second, and finds when the queue recovered.
func analyseHold(r *result, rec *recorder, holdStart, holdEnd, total time.Duration) {
	hs, he, end := int(holdStart.Seconds()), int(holdEnd.Seconds()), int(total.Seconds())
	count := func(s int) float64 { return float64(rec.perSecond[s].Load()) }
	phase := func(from, to int) (tput float64, q quantiles) {
		var lat []int64
		for s := from; s < to; s++ {
			tput += count(s)
			lat = append(lat, rec.secLat[s]...)
		}
		return tput / float64(max(to-from, 1)), quantilesOf(lat)
	}
	warm := min(2, hs)
	cleanT, cleanQ := phase(warm, hs)
	duringT, duringQ := phase(hs, he)
	afterT, afterQ := phase(he, end)
	rolling := func(s int) float64 { // 5 s mean ending at s
		var sum float64
		for k := max(s-4, 0); k <= s; k++ {
			sum += count(k)
		}
		return sum / float64(min(5, s+1))
	}
	minFrac := 1.0
	for s := hs + 4; s < he; s++ {
		if cleanT > 0 {
			minFrac = min(minFrac, rolling(s)/cleanT)
		}
	}
	recovery := -1
	limit := max(2*cleanQ.P99, cleanQ.P99+5)
	for s := he; s+5 <= end; s++ {
		ok := true
		for k := s; k < s+5 && ok; k++ {
			q := quantilesOf(rec.secLat[k])
			ok = count(k) >= 0.9*cleanT && q.P99 <= limit
		}
		if ok {
			recovery = s - he
			break
		}
	}
	r.extra("clean_jobs_per_s", fmt.Sprintf("%.0f", cleanT))
	r.extra("during_jobs_per_s", fmt.Sprintf("%.0f", duringT))
	r.extra("after_jobs_per_s", fmt.Sprintf("%.0f", afterT))
	r.extra("min_5s_during_vs_clean", fmt.Sprintf("%.2f", minFrac))
	r.extra("p99_ms_clean_during_after", fmt.Sprintf("%.1f/%.1f/%.1f", cleanQ.P99, duringQ.P99, afterQ.P99))
	r.extra("recovery_s", recovery) // -1: not within the run
}

// s6Kill: a worker process holding S6Leases leases is killed with SIGKILL;
// every one of its jobs must go to the surviving worker, promptly.
func (b *bench) s6Kill(ctx context.Context) {
	n := b.cfg.S6Leases
	r := result{Scenario: "S6", Variant: fmt.Sprintf("kill -9 worker holding %d", n)}
	err := func() error {
		if err := b.e.reset(ctx); err != nil {
			return err
		}
		q := b.queue()
		rec := newRecorder(n, 0, false)
		p, err := newProducer(b.e, 1, q, rec, n)
		if err != nil {
			return err
		}
		err = p.closedLoop(ctx, 1, 1000, time.Time{})
		p.close()
		if err != nil {
			return err
		}
		holder, err := b.startHolder(ctx, q, n)
		if err != nil {
			return err
		}
		ws, err := startWorkers(ctx, b.e, 1, workerParams{Queue: q, Window: 2 * n, Rec: rec})
		if err != nil {
			_ = holder.Process.Kill()
			_ = holder.Wait()
			return err
		}
		m, err := b.e.startMeter(ctx)
		if err != nil {
			stopWorkers(ws)
			return err
		}
		start := time.Now()
		rec.stampOverride.Store(start.UnixNano())
		if err := holder.Process.Kill(); err != nil {
			stopWorkers(ws)
			return err
		}
		_ = holder.Wait()
		drained := waitDelivered(ctx, rec, n, b.cfg.DrainTimeout)
		elapsed := time.Since(start)
		werr := stopWorkers(ws)
		r.setLatency("kill_to_restart", rec.latencies())
		if err := b.finishWorked(ctx, m, &r, rec, q, n, elapsed, drained, werr); err != nil {
			return err
		}
		r.extra("all_released_within_1s", r.Max <= 1000)
		return nil
	}()
	b.emit(r, err)
}

// startHolder runs the holder role as a separate process and waits until it
// holds n leases.
func (b *bench) startHolder(ctx context.Context, queue string, n int) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-addr", b.e.addr, "-queue", queue, "-n", strconv.Itoa(n))
	cmd.Env = append(os.Environ(), roleEnv+"=holder")
	cmd.Stderr = b.e.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	held := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "HELD ") {
				held <- nil
				return
			}
		}
		held <- errors.New("the holder exited before holding its leases")
	}()
	select {
	case err = <-held:
	case <-time.After(60 * time.Second):
		err = errors.New("the holder did not get its leases within 60 s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	return cmd, nil
}

// s6Restart restarts PostgreSQL (fast shutdown: sessions cut, transactions
// rolled back) in the middle of steady load. Producers retry with unique
// keys; workers use short leases so that acks lost in the restart come back
// quickly. Nothing may be lost; duplicates are counted, not forbidden.
func (b *bench) s6Restart(ctx context.Context) {
	r := result{Scenario: "S6", Variant: fmt.Sprintf("PostgreSQL restart at %.0f/s", b.cfg.S6Rate)}
	if b.e.cluster == nil {
		b.emit(r, errors.New("needs a private PostgreSQL (-pg private) to restart"))
		return
	}
	var downtime time.Duration
	var restartedAt time.Duration // since the recorder's t0
	var restartErr error
	during := func(ctx context.Context, rec *recorder) {
		time.Sleep(b.cfg.S6Duration / 3)
		t := time.Now()
		if restartErr = b.e.cluster.Stop(ctx); restartErr != nil {
			return
		}
		restartErr = b.e.cluster.Restart(ctx)
		downtime = time.Since(t)
		b.e.refreshPostmaster(ctx)
		restartedAt = time.Since(rec.t0)
	}
	err := b.e.reset(ctx)
	var rec *recorder
	if err == nil {
		rec, err = b.steady(ctx, &r, steadyRun{rate: b.cfg.S6Rate, d: b.cfg.S6Duration, timeline: true, during: during,
			lease: 5 * time.Second, unique: true})
	}
	if err == nil {
		err = restartErr
	}
	// The postmaster before the restart is gone with its CPU count.
	r.CPUPostgres = 0
	r.extra("cpu_postgres", "not measured across a restart")
	if rec != nil {
		r.extra("downtime_ms", downtime.Milliseconds())
		back := -1
		for s := int(restartedAt.Seconds()); s < len(rec.perSecond); s++ {
			if rec.perSecond[s].Load() > 0 {
				back = s - int(restartedAt.Seconds())
				break
			}
		}
		r.extra("first_start_after_restart_s", back)
	}
	b.emit(r, err)
}

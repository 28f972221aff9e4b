package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// The ceilings (scenario "C") are what plain SQL reaches on the same
// PostgreSQL, table and indexes, driven by pgbench with the scripts in
// bench/. queued's figures read as a fraction of these.
type ceiling struct {
	name      string
	script    string
	jobsPerTx int // jobs one script execution moves
	clients   int
	preload   bool // fill a backlog first and run it down (-t instead of -T)
}

var ceilings = []ceiling{
	{"insert 1/tx x32", "insert1.sql", 1, 32, false},
	{"insert 100/stmt x4", "insert100.sql", 100, 4, false},
	{"insert 1000/stmt x4", "insert1000.sql", 1000, 4, false},
	{"end-to-end 1/tx x32", "e2e1.sql", 1, 32, false},
	{"end-to-end 100/stmt x4", "e2e100.sql", 100, 4, false},
	{"drain 100/stmt x4", "drain100.sql", 100, 4, true},
}

// fillAvailableSQL makes a backlog for the drain ceiling.
const fillAvailableSQL = `
INSERT INTO queued_jobs (queue, name, payload, state, max_attempts, run_at, created_at)
SELECT 'ceiling', 'noop', decode(repeat('00', 100), 'hex'), 'available', 5, now(), now()
FROM generate_series(1, @rows::int)`

var tpsLine = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

func (b *bench) ceilings(ctx context.Context) {
	for _, c := range ceilings {
		r := result{Scenario: "C", Variant: c.name}
		err := b.ceiling(ctx, c, &r)
		b.emit(r, err)
	}
}

func (b *bench) ceiling(ctx context.Context, c ceiling, r *result) error {
	if err := b.e.reset(ctx); err != nil {
		return err
	}
	args := []string{"-n", "-M", "prepared", "-c", strconv.Itoa(c.clients), "-j", "2",
		"-f", filepath.Join(b.benchDir, c.script)}
	if c.preload {
		perClient := b.cfg.Jobs / c.jobsPerTx / c.clients
		if _, err := b.e.pool.Exec(ctx, fillAvailableSQL, pgx.NamedArgs{"rows": perClient * c.clients * c.jobsPerTx}); err != nil {
			return err
		}
		if _, err := b.e.pool.Exec(ctx, `VACUUM ANALYZE queued_jobs`); err != nil {
			return err
		}
		if err := b.e.checkpoint(ctx); err != nil {
			return err
		}
		args = append(args, "-t", strconv.Itoa(perClient))
	} else {
		args = append(args, "-T", strconv.Itoa(max(1, int(b.cfg.CeilingDuration.Seconds()))))
	}
	args = append(args, b.e.dbURL)
	m, err := b.e.startMeter(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "pgbench", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pgbench %s: %w\n%s", c.script, err, out.String())
	}
	elapsed := time.Since(start)
	match := tpsLine.FindStringSubmatch(out.String())
	if match == nil {
		return fmt.Errorf("pgbench %s: no tps in its output:\n%s", c.script, out.String())
	}
	tps, _ := strconv.ParseFloat(match[1], 64)
	var done int64
	if err := b.e.pool.QueryRow(ctx, `SELECT count(*) FROM queued_jobs WHERE state = 'completed' OR $1`, c.script[:6] == "insert").Scan(&done); err != nil {
		return err
	}
	if err := m.finish(ctx, r, done, elapsed); err != nil {
		return err
	}
	// pgbench's own rate excludes connection set-up; report it.
	r.JobsPerS = tps * float64(c.jobsPerTx)
	r.LatencyOf = "none"
	r.Check = check{Enqueued: done, WorkedOnce: done}
	r.ExactlyOnce = true
	return nil
}

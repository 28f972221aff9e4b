// Command queuebench measures queued against PostgreSQL: the scenarios S1-S7
// of BENCHMARKS.md, through the real gRPC API. It prints one JSON line per
// run as it finishes and a table at the end. It decides nothing: numbers
// from a shared machine are to be read, compared as ratios, and taken as
// medians of several runs.
//
// By default it starts a private PostgreSQL in a temporary directory (durable
// settings) and queued as a child process, so that the CPU time and memory
// of PostgreSQL, queued and the load generator are measured apart.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if isRole, code := runRole(); isRole {
		os.Exit(code)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "queuebench: %v\n", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("queuebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ec envConfig
	fs.StringVar(&ec.PG, "pg", "private", "PostgreSQL: private (a pglocal cluster in a temp dir) or local (a fresh database on 127.0.0.1:5432)")
	fs.StringVar(&ec.DatabaseURL, "database-url", "", "use this database (stats, fixtures; and the started server's database) instead of -pg")
	fs.StringVar(&ec.Server, "server", "", "benchmark this running queued (gRPC address) instead of starting one; it must use -database-url")
	fs.IntVar(&ec.QueuedPID, "queued-pid", 0, "pid of the -server process, for its CPU and memory")
	fs.BoolVar(&ec.PGStatStatements, "pg-stat-statements", false, "preload pg_stat_statements in the private cluster")
	workers := fs.String("worker", workerRaw, "workers: sdk (the Go SDK's Worker, no-op handler, Concurrency = window) or raw (a Lease stream driven by hand, acks not awaited); sdk,raw runs every scenario with both, one after the other")
	so := &ec.ServerOpts
	fs.IntVar(&so.MaxConns, "max-conns", 16, "started server: database pool size")
	fs.IntVar(&so.Flushers, "flushers", 0, "started server: concurrent coalesced writes per kind (0: default)")
	fs.IntVar(&so.WriteBatchMax, "write-batch-max", 0, "started server: rows per coalesced write (0: default)")
	fs.IntVar(&so.ClaimBatchMax, "claim-batch-max", 0, "started server: jobs per claim (0: default)")
	fs.DurationVar(&so.Retention, "retention", 0, "started server: retention of finished jobs (0: default)")
	fs.StringVar(&so.Pprof, "server-pprof", "", "started server: serve net/http/pprof on this address")

	bc := defaultBenchConfig()
	full := fs.Bool("full", false, "BENCHMARKS.md sizes: 200k jobs, 60 s per rate, 1M+1M rows, 5 min S5 (about 30 min)")
	scenarios := fs.String("scenarios", "C,S1,S2,S3,S4,S5,S6,S7", "scenarios to run, comma separated (C: plain-SQL ceilings with pgbench; S6 is S6kill and S6restart; S7 is S7cron and S7flows)")
	fs.IntVar(&bc.Jobs, "jobs", bc.Jobs, "S1/S2 jobs per run")
	fs.DurationVar(&bc.Duration, "duration", bc.Duration, "S3/S4 length per rate")
	s2 := fs.String("s2", "1x16,1x256,4x16,4x256", "S2 variants: worker connections x window")
	rates := fs.String("rates", "500,2000,5000,max", "S3 rates in jobs/s; max is a closed loop")
	fs.IntVar(&bc.MaxCallers, "max-callers", bc.MaxCallers, "concurrent single-job callers for max")
	fs.IntVar(&bc.Workers, "workers", bc.Workers, "S3-S6 worker connections")
	fs.IntVar(&bc.Window, "window", bc.Window, "S3-S6 worker window")
	fs.IntVar(&bc.S4Rows, "s4-rows", bc.S4Rows, "S4 scheduled rows and finished rows (each)")
	fs.IntVar(&bc.S4Due, "s4-due", bc.S4Due, "S4 jobs due in the same second")
	fs.DurationVar(&bc.S5Duration, "s5-duration", bc.S5Duration, "S5 length")
	fs.DurationVar(&bc.S5Hold, "s5-hold", bc.S5Hold, "S5 time the transaction stays open, in the middle")
	fs.Float64Var(&bc.S5Rate, "s5-rate", bc.S5Rate, "S5 rate (0: closed loop at max)")
	fs.IntVar(&bc.S6Leases, "s6-leases", bc.S6Leases, "S6 leases held by the killed worker")
	fs.DurationVar(&bc.S6Duration, "s6-duration", bc.S6Duration, "S6 restart run length")
	fs.IntVar(&bc.S7Schedules, "s7-schedules", bc.S7Schedules, "S7 cron schedules")
	fs.StringVar(&bc.S7Spec, "s7-spec", bc.S7Spec, "S7 cron spec of every schedule (six fields for seconds)")
	fs.IntVar(&bc.S7Ticks, "s7-ticks", bc.S7Ticks, "S7 ticks to measure, from the first tick every schedule has")
	fs.Float64Var(&bc.S7FlowRate, "s7-flow-rate", bc.S7FlowRate, "S7 flows per second (7 jobs each: a root, 2 children, 4 grandchildren)")
	fs.DurationVar(&bc.S7Duration, "s7-duration", bc.S7Duration, "S7 flow run length (and of its plain-job baseline)")
	benchDir := fs.String("bench-dir", "bench", "directory of the pgbench scripts for the ceilings")
	fs.DurationVar(&bc.CeilingDuration, "ceiling-duration", bc.CeilingDuration, "length of each timed pgbench ceiling")
	jsonOnly := fs.Bool("json", false, "print only the JSON lines")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the load generator (producers and workers) to this file")
	settle := fs.Duration("stats-settle", 1100*time.Millisecond, "wait before reading xact_commit at the end of a run (PostgreSQL publishes it lazily)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *full {
		applyFull(&bc, fs)
	}
	var err error
	var kinds []string
	for _, k := range strings.Split(*workers, ",") {
		k = strings.TrimSpace(k)
		if k != workerSDK && k != workerRaw {
			return fmt.Errorf("-worker must be sdk, raw or both comma separated, got %q", *workers)
		}
		kinds = append(kinds, k)
	}
	ec.Worker = kinds[0]
	if bc.S2Variants, err = parseS2Variants(*s2); err != nil {
		return err
	}
	if bc.Rates, err = parseRates(*rates); err != nil {
		return err
	}
	want := map[string]bool{}
	for _, s := range strings.Split(*scenarios, ",") {
		want[strings.ToUpper(strings.TrimSpace(s))] = true
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	e, err := startEnv(ctx, ec, stderr)
	if err != nil {
		return err
	}
	defer e.close()
	e.statsSettle = *settle
	header(ctx, e, stderr)

	var results []result
	b := &bench{e: e, cfg: bc, benchDir: *benchDir, out: func(r result) {
		results = append(results, r)
		writeJSON(stdout, r)
	}}
	steps := []struct {
		id, alias string
		f         func(context.Context)
	}{
		{"C", "CEILINGS", b.ceilings}, {"S1", "", b.s1}, {"S2", "", b.s2}, {"S3", "", b.s3}, {"S4", "", b.s4}, {"S5", "", b.s5},
		{"S6", "S6KILL", b.s6Kill}, {"S6", "S6RESTART", b.s6Restart},
		{"S7", "S7CRON", b.s7Cron}, {"S7", "S7FLOWS", b.s7Flows},
	}
	for _, s := range steps {
		if !(want[s.id] || want[s.alias]) {
			continue
		}
		name := s.id
		if s.alias != "" && s.alias != "CEILINGS" {
			name = s.alias
		}
		for _, kind := range kinds {
			if ctx.Err() != nil {
				break
			}
			e.cfg.Worker = kind
			noWorkers := s.id == "C" || s.id == "S1"
			workers := ", " + kind + " workers"
			if noWorkers {
				workers = ""
			}
			fmt.Fprintf(stderr, "%s %s (load %.2f%s)\n", time.Now().Format("15:04:05"), name, loadAvg(), workers)
			s.f(ctx)
			if noWorkers {
				break // once is enough
			}
		}
	}
	if !*jsonOnly {
		fmt.Fprintln(stdout)
		writeTable(stdout, results)
	}
	if ec.PGStatStatements {
		topStatements(ctx, e, stderr)
	}
	return ctx.Err()
}

func defaultBenchConfig() benchConfig {
	return benchConfig{
		Jobs:            50_000,
		S1Single1Jobs:   5_000,
		BatchCallers:    4,
		Duration:        10 * time.Second,
		MaxCallers:      64,
		Workers:         2,
		Window:          256,
		S4Rows:          200_000,
		S4Rate:          1000,
		S4Due:           10_000,
		S5Duration:      60 * time.Second,
		S5Hold:          20 * time.Second,
		S5Rate:          1000,
		S6Leases:        1000,
		S6Rate:          1000,
		S6Duration:      20 * time.Second,
		MaxRate:         40_000,
		DrainTimeout:    60 * time.Second,
		S2Variants:      [][2]int{{1, 16}, {1, 256}, {4, 16}, {4, 256}},
		CeilingDuration: 10 * time.Second,
		S7Schedules:     1000,
		S7Spec:          "* * * * *",
		S7Ticks:         2,
		S7FlowRate:      200,
		S7Duration:      10 * time.Second,
	}
}

// applyFull sets BENCHMARKS.md's sizes for every flag not given explicitly.
func applyFull(bc *benchConfig, fs *flag.FlagSet) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["jobs"] {
		bc.Jobs = 200_000
		bc.S1Single1Jobs = 20_000
	}
	if !set["duration"] {
		bc.Duration = 60 * time.Second
	}
	if !set["s4-rows"] {
		bc.S4Rows = 1_000_000
	}
	if !set["s5-duration"] {
		bc.S5Duration = 5 * time.Minute
	}
	if !set["s5-hold"] {
		bc.S5Hold = 2 * time.Minute
	}
	if !set["ceiling-duration"] {
		bc.CeilingDuration = 30 * time.Second
	}
	if !set["s6-duration"] {
		bc.S6Duration = 60 * time.Second
	}
	if !set["s7-ticks"] {
		bc.S7Ticks = 5
	}
	if !set["s7-duration"] {
		bc.S7Duration = 60 * time.Second
	}
	bc.DrainTimeout = 3 * time.Minute
}

// parseS2Variants reads "4x256,1x16" as {4, 256}, {1, 16}.
func parseS2Variants(s string) ([][2]int, error) {
	var out [][2]int
	for _, f := range strings.Split(s, ",") {
		conns, window, ok := strings.Cut(strings.TrimSpace(f), "x")
		c, err1 := strconv.Atoi(conns)
		w, err2 := strconv.Atoi(window)
		if !ok || err1 != nil || err2 != nil || c <= 0 || w <= 0 {
			return nil, fmt.Errorf("-s2: %q is not workers x window, such as 4x256", f)
		}
		out = append(out, [2]int{c, w})
	}
	return out, nil
}

func parseRates(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "max" {
			out = append(out, 0)
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("-rates: %q is neither a positive rate nor max", f)
		}
		out = append(out, v)
	}
	return out, nil
}

// header prints what the numbers were taken on.
func header(ctx context.Context, e *env, w io.Writer) {
	var version, syncCommit, fsync, sharedBuffers string
	_ = e.pool.QueryRow(ctx, `SELECT version(), current_setting('synchronous_commit'), current_setting('fsync'), current_setting('shared_buffers')`).
		Scan(&version, &syncCommit, &fsync, &sharedBuffers)
	fmt.Fprintf(w, "queuebench: %d CPUs, %s\n  synchronous_commit=%s fsync=%s shared_buffers=%s\n  server %s (pid %d, idle RSS %.0f MB), postmaster pid %d, load %.2f\n",
		runtime.NumCPU(), version, syncCommit, fsync, sharedBuffers, e.addr, e.cpu.queued, rssMB(e.cpu.queued), e.cpu.postmaster, loadAvg())
}

// topStatements prints where PostgreSQL spent its time over the whole run.
func topStatements(ctx context.Context, e *env, w io.Writer) {
	rows, err := e.pool.Query(ctx, `SELECT calls, round(total_exec_time)::bigint, rows,
		regexp_replace(left(query, 110), '\s+', ' ', 'g')
		FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12`)
	if err != nil {
		fmt.Fprintf(w, "pg_stat_statements: %v\n", err)
		return
	}
	defer rows.Close()
	fmt.Fprintln(w, "top statements by total time (pg_stat_statements):")
	for rows.Next() {
		var calls, ms, n int64
		var q string
		if err := rows.Scan(&calls, &ms, &n, &q); err != nil {
			return
		}
		fmt.Fprintf(w, "  %8d ms %8d calls %9d rows  %s\n", ms, calls, n, q)
	}
}

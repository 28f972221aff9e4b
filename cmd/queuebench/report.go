package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// result is one scenario run: every figure BENCHMARKS.md asks for. It is
// printed as one JSON line and one table row.
type result struct {
	Scenario  string  `json:"scenario"`
	Variant   string  `json:"variant"`
	Worker    string  `json:"worker,omitempty"` // sdk or raw; empty for runs without workers
	Jobs      int64   `json:"jobs"`
	Seconds   float64 `json:"seconds"`
	JobsPerS  float64 `json:"jobs_per_s"`
	LatencyOf string  `json:"latency_of"` // enqueue_to_start, enqueue_rpc, due_to_start, kill_to_restart
	P50       float64 `json:"lat_p50_ms"`
	P95       float64 `json:"lat_p95_ms"`
	P99       float64 `json:"lat_p99_ms"`
	Max       float64 `json:"lat_max_ms"`

	CommitsPerJob  float64 `json:"commits_per_job"`   // pg_stat_database.xact_commit delta / jobs
	XIDsPerJob     float64 `json:"xids_per_job"`      // write transactions / jobs (exact)
	WALBytesPerJob float64 `json:"wal_bytes_per_job"` // pg_current_wal_lsn() delta / jobs
	DeadTuples     int64   `json:"dead_tuples"`
	LiveTuples     int64   `json:"live_tuples"`
	TableBytes     int64   `json:"table_index_bytes"`
	CPUPostgres    float64 `json:"cpu_postgres_s"`
	CPUQueued      float64 `json:"cpu_queued_s"`
	CPULoadgen     float64 `json:"cpu_loadgen_s"`
	RSSQueuedMB    float64 `json:"rss_queued_peak_mb"`

	Check       check          `json:"check"`
	ExactlyOnce bool           `json:"exactly_once"`
	Load1       float64        `json:"load1"`
	Extra       map[string]any `json:"extra,omitempty"`
	Error       string         `json:"error,omitempty"`
}

// meter takes the before-snapshot of a run and fills a result after it.
type meter struct {
	e     *env
	db    dbSnapshot
	cpu   cpuSample
	rss   *rssWatch
	start time.Time
}

func (e *env) startMeter(ctx context.Context) (*meter, error) {
	db, err := retry(ctx, func() (dbSnapshot, error) { return takeDBSnapshot(ctx, e.pool) })
	if err != nil {
		return nil, fmt.Errorf("database snapshot: %w", err)
	}
	return &meter{e: e, db: db, cpu: e.cpu.sample(), rss: watchRSS(e.cpu.queued), start: time.Now()}, nil
}

// finish fills r's resource figures for jobs done in elapsed.
func (m *meter) finish(ctx context.Context, r *result, jobs int64, elapsed time.Duration) error {
	cpu := m.e.cpu.sample()
	r.RSSQueuedMB = m.rss.finish()
	r.Jobs = jobs
	r.Seconds = elapsed.Seconds()
	if elapsed > 0 {
		r.JobsPerS = float64(jobs) / elapsed.Seconds()
	}
	r.CPUPostgres = cpu.Postgres - m.cpu.Postgres
	r.CPUQueued = cpu.Queued - m.cpu.Queued
	r.CPULoadgen = cpu.Self - m.cpu.Self
	r.Load1 = loadAvg()
	// Backends publish xact_commit at most once a second: give the last
	// ones a moment. xids_per_job needs no such wait.
	db, err := retry(ctx, func() (dbSnapshot, error) { return takeDBSnapshot(ctx, m.e.pool) })
	if err != nil {
		return fmt.Errorf("database snapshot: %w", err)
	}
	time.Sleep(m.e.statsSettle)
	later, err := retry(ctx, func() (dbSnapshot, error) { return takeDBSnapshot(ctx, m.e.pool) })
	if err != nil {
		return fmt.Errorf("database snapshot: %w", err)
	}
	wal, err := walDiff(ctx, m.e.pool, m.db.WAL, db.WAL)
	if err != nil {
		return err
	}
	ts, err := retry(ctx, func() (tableStats, error) { return takeTableStats(ctx, m.e.pool) })
	if err != nil {
		return fmt.Errorf("table stats: %w", err)
	}
	r.DeadTuples, r.LiveTuples, r.TableBytes = ts.DeadTuples, ts.LiveTuples, ts.TotalBytes
	if jobs > 0 {
		// The snapshots themselves are 3 of the commits and xids.
		r.CommitsPerJob = float64(later.Commits-m.db.Commits-3) / float64(jobs)
		r.XIDsPerJob = float64(db.XID-m.db.XID-1) / float64(jobs)
		r.WALBytesPerJob = float64(wal) / float64(jobs)
	}
	return nil
}

func (r *result) setLatency(of string, samples []int64) {
	q := quantilesOf(samples)
	r.LatencyOf = of
	r.P50, r.P95, r.P99, r.Max = q.P50, q.P95, q.P99, q.Max
}

func (r *result) extra(k string, v any) {
	if r.Extra == nil {
		r.Extra = make(map[string]any)
	}
	r.Extra[k] = v
}

// retry runs f twice: after a PostgreSQL restart the pool's first use of a
// dead connection fails once.
func retry[T any](ctx context.Context, f func() (T, error)) (T, error) {
	v, err := f()
	if err == nil || ctx.Err() != nil {
		return v, err
	}
	time.Sleep(200 * time.Millisecond)
	return f()
}

func writeJSON(w io.Writer, r result) {
	b, _ := json.Marshal(r)
	fmt.Fprintf(w, "%s\n", b)
}

func writeTable(w io.Writer, rs []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tvariant\tworker\tjobs\tjobs/s\tlatency\tp50 ms\tp95 ms\tp99 ms\tcommits/job\tWAL B/job\tdead tup\ttable MB\tcpu pg s\tcpu queued s\tcpu gen s\tRSS MB\tonce/lost/dup\tload\t")
	for _, r := range rs {
		verdict := fmt.Sprintf("%d/%d/%d", r.Check.WorkedOnce, r.Check.Lost, r.Check.Duplicates)
		if !r.ExactlyOnce {
			verdict += " !"
		}
		if r.Error != "" {
			verdict = "ERROR"
		}
		worker := r.Worker
		if worker == "" {
			worker = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.0f\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.0f\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%s\t%.2f\t\n",
			r.Scenario, r.Variant, worker, r.Jobs, r.JobsPerS, shortLatency(r.LatencyOf), r.P50, r.P95, r.P99,
			r.CommitsPerJob, r.WALBytesPerJob, r.DeadTuples, float64(r.TableBytes)/(1<<20),
			r.CPUPostgres, r.CPUQueued, r.CPULoadgen, r.RSSQueuedMB, verdict, r.Load1)
	}
	tw.Flush()
	for _, r := range rs {
		if len(r.Extra) == 0 && r.Error == "" {
			continue
		}
		var parts []string
		for k, v := range r.Extra {
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
		if r.Error != "" {
			parts = append(parts, "error="+r.Error)
		}
		slices.Sort(parts)
		fmt.Fprintf(w, "  %s %s: %s\n", r.Scenario, r.Variant, strings.Join(parts, " "))
	}
}

func shortLatency(of string) string {
	switch of {
	case "enqueue_to_start":
		return "enq→start"
	case "enqueue_rpc":
		return "rpc"
	case "due_to_start":
		return "due→start"
	case "kill_to_restart":
		return "kill→start"
	case "tick_to_start":
		return "tick→start"
	case "flow_enqueue_to_root_completed":
		return "flow→done"
	}
	return of
}

package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// payloadSize is the size of every benchmark job's payload (BENCHMARKS.md:
// 100-byte payloads). The first 8 bytes are the job's sequence number in its
// run, the next 8 the enqueue time in Unix nanoseconds, read back by the
// worker: both timestamps come from this process's clock.
const payloadSize = 100

func makePayload(seq uint64, stamp time.Time) []byte {
	p := make([]byte, payloadSize)
	binary.LittleEndian.PutUint64(p[0:8], seq)
	binary.LittleEndian.PutUint64(p[8:16], uint64(stamp.UnixNano()))
	return p
}

func readPayload(p []byte) (seq uint64, stamp int64, ok bool) {
	if len(p) < 16 {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint64(p[0:8]), int64(binary.LittleEndian.Uint64(p[8:16])), true
}

// recorder counts, per sequence number, how often a job was enqueued
// successfully and how often a worker received it, and keeps every
// enqueue-to-start latency. It is the exactly-once check: at the end every
// enqueued job must have been received exactly once.
type recorder struct {
	t0         time.Time
	enqueued   []atomic.Uint32
	deliveries []atomic.Uint32
	lat        []int64 // nanoseconds, filled up to latN
	latN       atomic.Int64
	enqCount   atomic.Int64
	started    atomic.Int64 // deliveries, repeats included
	ackErrors  atomic.Int64
	foreign    atomic.Int64 // deliveries with a sequence number out of range
	lastStart  atomic.Int64 // ns since t0
	// stampOverride, when set, replaces every payload stamp (Unix ns): S6
	// measures from the kill, not from the enqueue.
	stampOverride atomic.Int64

	// perSecond counts deliveries per second since t0, for timelines.
	perSecond []atomic.Int64
	// secLat keeps latencies per second when timeline is on.
	secMu  sync.Mutex
	secLat [][]int64
}

func newRecorder(capacity int, seconds int, timeline bool) *recorder {
	r := &recorder{
		t0:         time.Now(),
		enqueued:   make([]atomic.Uint32, capacity),
		deliveries: make([]atomic.Uint32, capacity),
		lat:        make([]int64, capacity*2),
		perSecond:  make([]atomic.Int64, seconds+1),
	}
	if timeline {
		r.secLat = make([][]int64, seconds+1)
	}
	return r
}

// markEnqueued records that the job with sequence seq was committed.
func (r *recorder) markEnqueued(seq uint64) {
	if seq < uint64(len(r.enqueued)) {
		r.enqueued[seq].Add(1)
		r.enqCount.Add(1)
	}
}

// start records that a worker received a job.
func (r *recorder) start(payload []byte) {
	now := time.Now()
	r.started.Add(1)
	seq, stamp, ok := readPayload(payload)
	if !ok || seq >= uint64(len(r.deliveries)) {
		r.foreign.Add(1)
		return
	}
	r.deliveries[seq].Add(1)
	if o := r.stampOverride.Load(); o != 0 {
		stamp = o
	}
	d := now.UnixNano() - stamp
	if i := r.latN.Add(1) - 1; i < int64(len(r.lat)) {
		r.lat[i] = d
	}
	since := now.Sub(r.t0)
	r.lastStart.Store(int64(since))
	if s := int(since / time.Second); s >= 0 && s < len(r.perSecond) {
		r.perSecond[s].Add(1)
		if r.secLat != nil {
			r.secMu.Lock()
			r.secLat[s] = append(r.secLat[s], d)
			r.secMu.Unlock()
		}
	}
}

// check is the exactly-once verdict over the sequence numbers in [0, n).
type check struct {
	Enqueued   int64 `json:"enqueued"`
	WorkedOnce int64 `json:"worked_once"`
	Lost       int64 `json:"lost"`
	Duplicates int64 `json:"duplicates"` // extra deliveries of enqueued jobs
	Unexpected int64 `json:"unexpected"` // deliveries of jobs whose enqueue failed or unknown
	AckErrors  int64 `json:"ack_errors"`
}

func (c check) ok() bool {
	return c.Lost == 0 && c.Duplicates == 0 && c.Unexpected == 0 && c.AckErrors == 0
}

func (r *recorder) check(n int) check {
	var c check
	for i := range min(n, len(r.enqueued)) {
		e, d := r.enqueued[i].Load(), r.deliveries[i].Load()
		switch {
		case e == 0 && d > 0:
			c.Unexpected += int64(d)
		case e == 0:
		case d == 0:
			c.Enqueued++
			c.Lost++
		default:
			c.Enqueued++
			c.WorkedOnce++
			c.Duplicates += int64(d - 1)
		}
	}
	c.Unexpected += r.foreign.Load()
	c.AckErrors = r.ackErrors.Load()
	return c
}

// pending counts jobs in [0, n) enqueued but not yet received.
func (r *recorder) pending(n int) int {
	k := 0
	for i := range min(n, len(r.deliveries)) {
		if r.enqueued[i].Load() > 0 && r.deliveries[i].Load() == 0 {
			k++
		}
	}
	return k
}

func (r *recorder) latencies() []int64 {
	n := min(r.latN.Load(), int64(len(r.lat)))
	return r.lat[:n]
}

// quantiles returns p50, p95, p99 and max of samples in milliseconds.
type quantiles struct {
	P50, P95, P99, Max float64
}

func quantilesOf(samples []int64) quantiles {
	if len(samples) == 0 {
		return quantiles{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	at := func(p float64) float64 {
		i := int(p * float64(len(s)-1))
		return float64(s[i]) / 1e6
	}
	return quantiles{P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: float64(s[len(s)-1]) / 1e6}
}

// dbSnapshot is what PostgreSQL reports about the benchmark database at one
// moment.
type dbSnapshot struct {
	Commits int64  // pg_stat_database.xact_commit
	WAL     string // pg_current_wal_lsn()
	XID     int64  // pg_current_xact_id(): write transactions, exact
}

func takeDBSnapshot(ctx context.Context, pool *pgxpool.Pool) (dbSnapshot, error) {
	var s dbSnapshot
	err := pool.QueryRow(ctx, `SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
		pg_current_wal_lsn()::text, pg_current_xact_id()::text::bigint`).Scan(&s.Commits, &s.WAL, &s.XID)
	return s, err
}

func walDiff(ctx context.Context, pool *pgxpool.Pool, from, to string) (int64, error) {
	var d float64
	err := pool.QueryRow(ctx, `SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)`, to, from).Scan(&d)
	return int64(d), err
}

// tableStats are the end-of-scenario figures of the job table.
type tableStats struct {
	DeadTuples int64
	LiveTuples int64
	TotalBytes int64 // table + indexes + toast
}

func takeTableStats(ctx context.Context, pool *pgxpool.Pool) (tableStats, error) {
	var s tableStats
	err := pool.QueryRow(ctx, `SELECT coalesce(n_dead_tup, 0), coalesce(n_live_tup, 0), pg_total_relation_size('queued_jobs')
		FROM pg_stat_user_tables WHERE relname = 'queued_jobs'`).Scan(&s.DeadTuples, &s.LiveTuples, &s.TotalBytes)
	return s, err
}

// cpuProbe reads CPU seconds of PostgreSQL (postmaster, its live children,
// and its reaped children), of the queued server process, and of this
// process.
type cpuProbe struct {
	postmaster int // 0: unknown
	queued     int // 0: unknown
}

type cpuSample struct {
	Postgres, Queued, Self float64 // seconds
}

const clockTicks = 100 // USER_HZ on Linux

func (p cpuProbe) sample() cpuSample {
	var s cpuSample
	if p.postmaster > 0 {
		s.Postgres = postgresCPU(p.postmaster)
	}
	if p.queued > 0 {
		if f, err := procStat(p.queued); err == nil {
			s.Queued = float64(f.utime+f.stime) / clockTicks
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.Self = tv(ru.Utime) + tv(ru.Stime)
	}
	return s
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

type statFields struct {
	ppid                         int
	utime, stime, cutime, cstime int64
}

// procStat parses /proc/<pid>/stat (fields after the parenthesised comm).
func procStat(pid int) (statFields, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return statFields{}, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return statFields{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] = state (field 3), so field n is f[n-3].
	if len(f) < 15 {
		return statFields{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	num := func(n int) int64 { v, _ := strconv.ParseInt(f[n-3], 10, 64); return v }
	return statFields{ppid: int(num(4)), utime: num(14), stime: num(15), cutime: num(16), cstime: num(17)}, nil
}

// postgresCPU sums the postmaster's own and reaped children's time and the
// time of its live children (the backends, walwriter, autovacuum, ...).
func postgresCPU(postmaster int) float64 {
	pm, err := procStat(postmaster)
	if err != nil {
		return 0
	}
	ticks := pm.utime + pm.stime + pm.cutime + pm.cstime
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == postmaster {
			continue
		}
		f, err := procStat(pid)
		if err != nil || f.ppid != postmaster {
			continue
		}
		ticks += f.utime + f.stime
	}
	return float64(ticks) / clockTicks
}

// postmasterOf finds the postmaster behind a backend pid.
func postmasterOf(backend int) int {
	f, err := procStat(backend)
	if err != nil {
		return 0
	}
	return f.ppid
}

// rssMB is the resident set size of pid in MiB, 0 if unknown.
func rssMB(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// loadAvg is the 1-minute load average, recorded next to every figure
// because the machine is shared.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// rssWatch samples the RSS of pid until stopped and keeps the peak.
type rssWatch struct {
	peak atomic.Uint64 // float64 bits
	stop chan struct{}
	done chan struct{}
}

func watchRSS(pid int) *rssWatch {
	w := &rssWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			if v := rssMB(pid); v > floatFromBits(w.peak.Load()) {
				w.peak.Store(bitsFromFloat(v))
			}
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *rssWatch) finish() float64 {
	close(w.stop)
	<-w.done
	return floatFromBits(w.peak.Load())
}

func floatFromBits(b uint64) float64 { return math.Float64frombits(b) }
func bitsFromFloat(f float64) uint64 { return math.Float64bits(f) }

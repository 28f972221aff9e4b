package metrics

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/queued-dev/queued/store"
)

// QueueStatsTTLDefault is how long one count of the job table serves
// scrapes. Several Prometheus servers, or a dashboard polling every second,
// then cost one query per replica per TTL.
const QueueStatsTTLDefault = 5 * time.Second

// liveStates are the states counted exactly; finished ones are estimated.
var liveStates = []string{"available", "scheduled", "running", "waiting_children"}

// QueueStatsSource is what the queue collector reads; *store.Store is one.
type QueueStatsSource interface {
	QueueStats(ctx context.Context) (store.QueueStats, error)
}

// QueueCollectorConfig configures WatchQueues.
type QueueCollectorConfig struct {
	Source QueueStatsSource
	TTL    time.Duration    // 0: QueueStatsTTLDefault
	Now    func() time.Time // nil: time.Now
	Logger *slog.Logger
}

// WatchQueues registers a collector that reports, per queue, the jobs in
// each live state and the age of the oldest available job (the lag), plus
// an estimate of the finished rows. Every replica reports the same figures
// for the same database: aggregate them with max, not sum.
func (m *Metrics) WatchQueues(cfg QueueCollectorConfig) {
	if cfg.TTL == 0 {
		cfg.TTL = QueueStatsTTLDefault
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m.reg.MustRegister(&queueCollector{cfg: cfg, known: make(map[string]bool)})
}

var (
	jobsDesc = prometheus.NewDesc(namespace+"_jobs", "Jobs per queue in each live state (exact count, cached for a few seconds).",
		[]string{"queue", "state"}, nil)
	lagDesc = prometheus.NewDesc(namespace+"_queue_lag_seconds", "Age of the oldest available job of the queue: how long it has been claimable but unclaimed (0 when none wait).",
		[]string{"queue"}, nil)
	finishedDesc = prometheus.NewDesc(namespace+"_jobs_finished_estimate", "Planner estimate of finished jobs kept for their retention period (from the last VACUUM/ANALYZE).",
		nil, nil)
	statsUpDesc = prometheus.NewDesc(namespace+"_queue_stats_up", "1 when the last count of the job table succeeded, else 0.",
		nil, nil)
	statsDurationDesc = prometheus.NewDesc(namespace+"_queue_stats_query_seconds", "How long the last count of the job table took.",
		nil, nil)
)

type queueCollector struct {
	cfg QueueCollectorConfig

	mu       sync.Mutex
	at       time.Time // when stats were read; zero: never
	stats    store.QueueStats
	err      error
	took     time.Duration
	known    map[string]bool // queues seen so far, reported at 0 when empty
	readTime time.Time       // the clock when stats were read, for the lag
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{jobsDesc, lagDesc, finishedDesc, statsUpDesc, statsDurationDesc} {
		ch <- d
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || time.Since(c.at) >= c.cfg.TTL {
		c.refresh()
	}
	ch <- prometheus.MustNewConstMetric(statsDurationDesc, prometheus.GaugeValue, c.took.Seconds())
	if c.err != nil {
		ch <- prometheus.MustNewConstMetric(statsUpDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(statsUpDesc, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(finishedDesc, prometheus.GaugeValue, float64(c.stats.FinishedEstimate))

	counts := make(map[[2]string]int64)
	lag := make(map[string]float64)
	for _, s := range c.stats.Live {
		counts[[2]string{s.Queue, s.State}] = s.Count
		if s.State == "available" && !s.OldestRunAt.IsZero() {
			lag[s.Queue] = max(c.readTime.Sub(s.OldestRunAt).Seconds(), 0)
		}
	}
	for q := range c.known {
		for _, st := range liveStates {
			ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(counts[[2]string{q, st}]), q, st)
		}
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, lag[q], q)
	}
}

// refresh reads the stats. A failure is reported (queued_queue_stats_up 0)
// instead of serving stale counts as if they were current.
func (c *queueCollector) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	stats, err := c.cfg.Source.QueueStats(ctx)
	c.took = time.Since(start)
	c.at = time.Now()
	c.readTime = c.cfg.Now()
	c.err = err
	if err != nil {
		c.cfg.Logger.Warn("count jobs for metrics", "err", err)
		return
	}
	c.stats = stats
	for _, s := range stats.Live {
		c.known[s.Queue] = true
	}
}

package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/queued-dev/queued/service"
)

var (
	queuesPausedDesc = prometheus.NewDesc(namespace+"_queues_paused", "Queues this replica leaves out of its claims because they are paused.",
		nil, nil)
	queuePausedDesc = prometheus.NewDesc(namespace+"_queue_paused", "1 for each paused queue (as this replica sees it).",
		[]string{"queue"}, nil)
	queueRateLimitDesc = prometheus.NewDesc(namespace+"_queue_rate_limit_per_second", "Sustained rate limit of each rate-limited queue, in jobs started per second.",
		[]string{"queue"}, nil)
)

// WatchQueueControls registers a collector that reports the paused and
// rate-limited queues from controls (the service's in-memory view, so a
// scrape costs no query). Only configured queues have series.
func (m *Metrics) WatchQueueControls(controls func() []service.QueueSettings) {
	m.reg.MustRegister(&controlsCollector{controls: controls})
}

type controlsCollector struct {
	controls func() []service.QueueSettings
}

func (c *controlsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queuesPausedDesc
	ch <- queuePausedDesc
	ch <- queueRateLimitDesc
}

func (c *controlsCollector) Collect(ch chan<- prometheus.Metric) {
	paused := 0
	for _, q := range c.controls() {
		if q.Paused {
			paused++
			ch <- prometheus.MustNewConstMetric(queuePausedDesc, prometheus.GaugeValue, 1, q.Queue)
		}
		if q.Limit.Limited() {
			ch <- prometheus.MustNewConstMetric(queueRateLimitDesc, prometheus.GaugeValue, float64(q.Limit.Max)/q.Limit.Per.Seconds(), q.Queue)
		}
	}
	ch <- prometheus.MustNewConstMetric(queuesPausedDesc, prometheus.GaugeValue, float64(paused))
}

// ClaimLimited counts a rate-limited claim as a claim.
func (o *observedStore) ClaimLimited(ctx context.Context, p service.ClaimParams) ([]service.ClaimedJob, error) {
	start := time.Now()
	out, err := o.Store.ClaimLimited(ctx, p)
	o.m.observeBatch("claim", len(out), start, err)
	return out, err
}

package metrics

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// WatchPool registers the database pool's statistics: a pool that is
// always fully acquired, or acquisitions that wait, say the pool (or
// PostgreSQL's max_connections) is too small for the load.
func (m *Metrics) WatchPool(pool *pgxpool.Pool) {
	m.reg.MustRegister(poolCollector{pool})
}

var (
	poolAcquiredDesc = prometheus.NewDesc(namespace+"_db_pool_acquired_conns", "Connections in use.", nil, nil)
	poolIdleDesc     = prometheus.NewDesc(namespace+"_db_pool_idle_conns", "Idle connections.", nil, nil)
	poolTotalDesc    = prometheus.NewDesc(namespace+"_db_pool_total_conns", "Open connections.", nil, nil)
	poolMaxDesc      = prometheus.NewDesc(namespace+"_db_pool_max_conns", "Pool size limit.", nil, nil)
	poolAcquireDesc  = prometheus.NewDesc(namespace+"_db_pool_acquires_total", "Connections acquired from the pool.", nil, nil)
	poolWaitDesc     = prometheus.NewDesc(namespace+"_db_pool_empty_acquires_total", "Acquisitions that had to wait because no connection was free.", nil, nil)
	poolWaitSecDesc  = prometheus.NewDesc(namespace+"_db_pool_acquire_seconds_total", "Total time spent acquiring connections.", nil, nil)
)

type poolCollector struct{ pool *pgxpool.Pool }

func (c poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolAcquiredDesc, poolIdleDesc, poolTotalDesc, poolMaxDesc, poolAcquireDesc, poolWaitDesc, poolWaitSecDesc} {
		ch <- d
	}
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	ch <- prometheus.MustNewConstMetric(poolAcquiredDesc, prometheus.GaugeValue, float64(s.AcquiredConns()))
	ch <- prometheus.MustNewConstMetric(poolIdleDesc, prometheus.GaugeValue, float64(s.IdleConns()))
	ch <- prometheus.MustNewConstMetric(poolTotalDesc, prometheus.GaugeValue, float64(s.TotalConns()))
	ch <- prometheus.MustNewConstMetric(poolMaxDesc, prometheus.GaugeValue, float64(s.MaxConns()))
	ch <- prometheus.MustNewConstMetric(poolAcquireDesc, prometheus.CounterValue, float64(s.AcquireCount()))
	ch <- prometheus.MustNewConstMetric(poolWaitDesc, prometheus.CounterValue, float64(s.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(poolWaitSecDesc, prometheus.CounterValue, s.AcquireDuration().Seconds())
}

// Package metrics is queued's Prometheus instrumentation: counters and
// batch histograms recorded at the Store port, live queue depth and lag read
// from PostgreSQL on scrape, worker streams and gRPC server metrics from
// interceptors, the database pool, and the Go runtime.
//
// Each server gets its own registry (not the global one), so tests that run
// several servers in one process do not collide.
//
// It is built on github.com/prometheus/client_golang, the reference client
// that Prometheus itself maintains, and on go-grpc-middleware's Prometheus
// provider, which fits the interceptor chain the server already uses.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

const namespace = "queued"

// leaseMethod is the worker stream; an open one is a connected worker.
const leaseMethod = "/queued.v1.QueueService/Lease"

// Metrics holds every metric of one server.
type Metrics struct {
	reg  *prometheus.Registry
	grpc *grpcprom.ServerMetrics

	enqueued     *prometheus.CounterVec // by queue
	duplicates   *prometheus.CounterVec // by queue
	completed    prometheus.Counter
	ackLost      prometheus.Counter
	retried      *prometheus.CounterVec // by queue
	failed       *prometheus.CounterVec // by queue
	released     prometheus.Counter
	abandoned    prometheus.Counter
	leaseExpired prometheus.Counter
	promoted     prometheus.Counter
	deleted      prometheus.Counter

	batchSize     *prometheus.HistogramVec // by op: insert, claim, ack
	batchDuration *prometheus.HistogramVec // by op
	storeErrors   *prometheus.CounterVec   // by op

	workers      prometheus.Gauge
	streamsEnded *prometheus.CounterVec // by gRPC code
	databaseUp   prometheus.Gauge
	serving      prometheus.Gauge
}

// New creates the metrics and registers them, with the Go runtime and
// process collectors, on a fresh registry.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help})
	}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help})
	}
	m.enqueued = counterVec("jobs_enqueued_total", "Jobs inserted by Enqueue (duplicates not counted).", "queue")
	m.duplicates = counterVec("jobs_duplicate_total", "Enqueued jobs whose unique key matched an unfinished job, so nothing was inserted.", "queue")
	m.completed = counter("jobs_completed_total", "Jobs acked (completed).")
	m.ackLost = counter("acks_lease_lost_total", "Acks refused because the lease was no longer held (expired, cancelled, or already settled).")
	m.retried = counterVec("jobs_retried_total", "Failed attempts that will be retried.", "queue")
	m.failed = counterVec("jobs_failed_total", "Jobs that failed for good (no attempts left or non-retryable).", "queue")
	m.released = counter("jobs_released_total", "Leased jobs handed back without counting an attempt.")
	m.abandoned = counter("jobs_abandoned_total", "Leased jobs whose worker stream ended before they were settled; the attempt counts.")
	m.leaseExpired = counter("lease_expired_total", "Leases taken back by the sweeper because they expired.")
	m.promoted = counter("jobs_promoted_total", "Scheduled jobs made available because their run_at came.")
	m.deleted = counter("jobs_deleted_total", "Finished jobs deleted after the retention period.")
	m.batchSize = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "batch_size",
		Help:    "Rows per coalesced database write or claim (op: insert, claim, ack).",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048},
	}, []string{"op"})
	m.batchDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "batch_duration_seconds",
		Help:    "Time one coalesced database write or claim took (op: insert, claim, ack).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"op"})
	m.storeErrors = counterVec("store_errors_total", "Database operations that failed, by operation.", "op")
	m.workers = gauge("workers_connected", "Open worker (Lease) streams on this replica.")
	m.streamsEnded = counterVec("worker_streams_ended_total", "Worker streams that ended, by gRPC code (OK: the worker hung up cleanly).", "code")
	m.databaseUp = gauge("database_up", "1 when the last health probe reached PostgreSQL, else 0.")
	m.serving = gauge("serving", "1 when gRPC health reports SERVING, else 0 (database down or draining).")
	m.grpc = grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())

	m.reg.MustRegister(
		m.enqueued, m.duplicates, m.completed, m.ackLost, m.retried, m.failed, m.released,
		m.abandoned, m.leaseExpired, m.promoted, m.deleted, m.batchSize, m.batchDuration,
		m.storeErrors, m.workers, m.streamsEnded, m.databaseUp, m.serving, m.grpc,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Registry is where the metrics live, for extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, Timeout: 10 * time.Second})
}

// SetHealth records the outcome of a health probe.
func (m *Metrics) SetHealth(databaseUp, serving bool) {
	m.databaseUp.Set(boolFloat(databaseUp))
	m.serving.Set(boolFloat(serving))
}

// UnaryInterceptor records gRPC server metrics for unary calls.
func (m *Metrics) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return m.grpc.UnaryServerInterceptor()
}

// StreamInterceptor records gRPC server metrics for streams, and counts
// open worker streams and how they end.
func (m *Metrics) StreamInterceptor() grpc.StreamServerInterceptor {
	inner := m.grpc.StreamServerInterceptor()
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if info.FullMethod != leaseMethod {
			return inner(srv, ss, info, handler)
		}
		m.workers.Inc()
		err := inner(srv, ss, info, handler)
		m.workers.Dec()
		m.streamsEnded.WithLabelValues(status.Code(err).String()).Inc()
		return err
	}
}

// InitializeGRPC pre-creates the gRPC metrics of every registered method
// at zero, so rates exist before the first call. Call it after registering
// the services.
func (m *Metrics) InitializeGRPC(s *grpc.Server) { m.grpc.InitializeMetrics(s) }

func (m *Metrics) observeBatch(op string, rows int, start time.Time, err error) {
	if err != nil {
		if !isCanceled(err) {
			m.storeErrors.WithLabelValues(op).Inc()
		}
		return
	}
	m.batchSize.WithLabelValues(op).Observe(float64(rows))
	m.batchDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

func (m *Metrics) countError(op string, err error) {
	if err != nil && !isCanceled(err) {
		m.storeErrors.WithLabelValues(op).Inc()
	}
}

// isCanceled tells a caller that gave up from a database that failed.
func isCanceled(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

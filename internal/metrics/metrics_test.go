package metrics_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/internal/queuedtest"
)

// TestMetricsEndpoint drives a real server through enqueue, lease, ack,
// nack and a worker hanging up, and reads the figures back from /metrics.
func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	srv := queuedtest.Start(t, queuedtest.WithHTTP())
	ctx := context.Background()
	c := srv.Client

	spec := func(q string) *queuedv1.JobSpec { return &queuedv1.JobSpec{Queue: q, Name: "m"} }
	delayed := spec("mq")
	delayed.Delay = durationpb.New(time.Hour)
	if _, err := c.Enqueue(ctx, &queuedv1.EnqueueRequest{Jobs: []*queuedv1.JobSpec{spec("mq"), spec("mq"), spec("mq"), delayed}}); err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	// A job claimable for an hour already: the queue lags by an hour.
	late := spec("lagq")
	late.RunAt = timestamppb.New(time.Now().Add(-time.Hour))
	if _, err := c.Enqueue(ctx, &queuedv1.EnqueueRequest{Jobs: []*queuedv1.JobSpec{late}}); err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}

	// One worker, window 1: ack the first job, nack the second (retry in an
	// hour), hold the third.
	wctx, hangUp := context.WithCancel(ctx)
	defer hangUp()
	stream, err := c.Lease(wctx)
	if err != nil {
		t.Fatalf("Lease() = %v", err)
	}
	if err := stream.Send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Open{Open: &queuedv1.LeaseOpen{Queues: []string{"mq"}, Window: 1}}}); err != nil {
		t.Fatal(err)
	}
	nextJob := func() *queuedv1.LeasedJob {
		t.Helper()
		for {
			m, err := stream.Recv()
			if err != nil {
				t.Fatalf("Recv() = %v", err)
			}
			if j := m.GetJob(); j != nil {
				return j
			}
		}
	}
	j := nextJob()
	if _, err := c.Ack(ctx, &queuedv1.AckRequest{JobId: j.GetJob().GetId(), LeaseToken: j.GetLeaseToken()}); err != nil {
		t.Fatalf("Ack() = %v", err)
	}
	j = nextJob()
	if _, err := c.Nack(ctx, &queuedv1.NackRequest{JobId: j.GetJob().GetId(), LeaseToken: j.GetLeaseToken(), Error: "boom", RetryDelay: durationpb.New(time.Hour)}); err != nil {
		t.Fatalf("Nack() = %v", err)
	}
	nextJob()

	m := scrape(t, srv)
	for _, w := range []struct {
		series string
		want   float64
	}{
		{`queued_jobs{queue="mq",state="available"}`, 0},
		{`queued_jobs{queue="mq",state="running"}`, 1},
		{`queued_jobs{queue="mq",state="scheduled"}`, 2},
		{`queued_jobs{queue="mq",state="waiting_children"}`, 0},
		{`queued_jobs{queue="lagq",state="available"}`, 1},
		{`queued_queue_lag_seconds{queue="mq"}`, 0},
		{`queued_jobs_enqueued_total{queue="mq"}`, 4},
		{`queued_jobs_enqueued_total{queue="lagq"}`, 1},
		{`queued_jobs_completed_total`, 1},
		{`queued_jobs_retried_total{queue="mq"}`, 1},
		{`queued_workers_connected`, 1},
		{`queued_queue_stats_up`, 1},
		{`grpc_server_handled_total{grpc_code="OK",grpc_method="Ack",grpc_service="queued.v1.QueueService",grpc_type="unary"}`, 1},
		{`grpc_server_handled_total{grpc_code="OK",grpc_method="Enqueue",grpc_service="queued.v1.QueueService",grpc_type="unary"}`, 2},
	} {
		if got, ok := m[w.series]; !ok || got != w.want {
			t.Errorf("%s = %v (present %v), want %v", w.series, got, ok, w.want)
		}
	}
	if lag := m[`queued_queue_lag_seconds{queue="lagq"}`]; lag < 3600 || lag > 3700 {
		t.Errorf("lag of lagq = %v s, want about 3600", lag)
	}
	for _, series := range []string{`queued_batch_size_count{op="claim"}`, `queued_batch_size_count{op="ack"}`, `queued_batch_duration_seconds_count{op="insert"}`, `go_goroutines`, `queued_db_pool_max_conns`} {
		if m[series] < 1 {
			t.Errorf("%s = %v, want at least 1", series, m[series])
		}
	}

	// The worker hangs up: it is no longer connected, and its stream is
	// counted as ended by the client (Canceled).
	hangUp()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m = scrape(t, srv)
		if m[`queued_workers_connected`] == 0 && m[`queued_worker_streams_ended_total{code="Canceled"}`] == 1 && m[`queued_database_up`] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after hang-up: workers_connected = %v, streams ended (Canceled) = %v, database_up = %v; want 0, 1, 1",
				m[`queued_workers_connected`], m[`queued_worker_streams_ended_total{code="Canceled"}`], m[`queued_database_up`])
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := m[`queued_jobs_abandoned_total`]; got != 1 {
		t.Errorf("queued_jobs_abandoned_total = %v, want 1 (the held job went back)", got)
	}
}

// scrape reads /metrics into series -> value (series as written, labels
// sorted by name as the exposition format does).
func scrape(t *testing.T, srv *queuedtest.Server) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + srv.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics = %d: %s", resp.StatusCode, b)
	}
	out := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestDashboardUsesExistingMetrics keeps deploy/grafana-dashboard.json
// honest: every metric it queries is exported by a real server once each
// kind of event has happened.
func TestDashboardUsesExistingMetrics(t *testing.T) {
	t.Parallel()
	srv := queuedtest.Start(t, queuedtest.WithHTTP())
	ctx := context.Background()
	c := srv.Client
	job := &queuedv1.JobSpec{Queue: "dq", Name: "d", UniqueKey: "once"}
	for range 2 { // the second is a duplicate
		if _, err := c.Enqueue(ctx, &queuedv1.EnqueueRequest{Jobs: []*queuedv1.JobSpec{job}}); err != nil {
			t.Fatalf("Enqueue() = %v", err)
		}
	}
	if _, err := c.Enqueue(ctx, &queuedv1.EnqueueRequest{Jobs: []*queuedv1.JobSpec{{Queue: "dq", Name: "d"}}}); err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	wctx, hangUp := context.WithCancel(ctx)
	stream, err := c.Lease(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Open{Open: &queuedv1.LeaseOpen{Queues: []string{"dq"}, Window: 1}}}); err != nil {
		t.Fatal(err)
	}
	// The first job is retried in an hour (it stays live, so the queue has
	// series), the second fails for good.
	for _, nack := range []*queuedv1.NackRequest{{RetryDelay: durationpb.New(time.Hour)}, {NonRetryable: true}} {
		var leased *queuedv1.LeasedJob
		for leased == nil {
			m, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			leased = m.GetJob()
		}
		nack.JobId, nack.LeaseToken = leased.GetJob().GetId(), leased.GetLeaseToken()
		if _, err := c.Nack(ctx, nack); err != nil {
			t.Fatalf("Nack() = %v", err)
		}
	}
	hangUp()

	dashboard, err := os.ReadFile("../../deploy/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	used := regexp.MustCompile(`\b(?:queued|grpc_server|go|process)_[a-z_]+\b`).FindAllString(string(dashboard), -1)
	if len(used) < 10 {
		t.Fatalf("found only %d metric names in the dashboard", len(used))
	}
	var exported map[string]float64
	deadline := time.Now().Add(10 * time.Second)
	for missing := used; len(missing) > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("the dashboard queries metrics the server does not export: %v", missing)
		}
		time.Sleep(50 * time.Millisecond)
		exported = scrape(t, srv)
		names := make(map[string]bool)
		for series := range exported {
			name, _, _ := strings.Cut(series, "{")
			names[name] = true
		}
		missing = nil
		for _, n := range used {
			if !names[n] {
				missing = append(missing, n)
			}
		}
	}
}

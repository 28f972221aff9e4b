package app_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/internal/queuedtest"
)

// A draining server reports NOT_SERVING over gRPC health and 503 on /readyz
// while workers still settle what they hold, and the health loop does not
// flip it back although the database answers.
func TestDrainingIsNotServing(t *testing.T) {
	t.Parallel()
	srv := queuedtest.Start(t, queuedtest.WithHTTP())
	health := watchHealth(t, srv)
	ctx := context.Background()
	if _, err := srv.Client.Enqueue(ctx, &queuedv1.EnqueueRequest{Jobs: []*queuedv1.JobSpec{{Queue: "drain", Name: "d"}}}); err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	// A worker holds the job, so the drain waits for it.
	stream, err := srv.Client.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Open{Open: &queuedv1.LeaseOpen{Queues: []string{"drain"}, Window: 1}}}); err != nil {
		t.Fatal(err)
	}
	var job *queuedv1.LeasedJob
	for job == nil {
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		job = m.GetJob()
	}
	waitFor(t, 10*time.Second, "SERVING", func() bool { return health.last() == healthpb.HealthCheckResponse_SERVING })

	stopped := make(chan error, 1)
	go func() { stopped <- srv.Shutdown(context.Background()) }()
	waitFor(t, 10*time.Second, "NOT_SERVING while draining", func() bool {
		return health.last() == healthpb.HealthCheckResponse_NOT_SERVING
	})
	resp, err := http.Get("http://" + srv.HTTPAddr() + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "draining") {
		t.Fatalf("/readyz while draining = %d %q, want 503 draining", resp.StatusCode, body)
	}
	// Several health probes pass while the worker still holds its job.
	time.Sleep(2500 * time.Millisecond)
	if got := health.last(); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health while draining = %v after the probe loop ran, want NOT_SERVING", got)
	}
	// Settle, so the drain ends. On a very slow machine the drain timeout
	// (5 s) may have cut the stream already; Shutdown finishes either way.
	_ = stream.Send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Ack{Ack: &queuedv1.AckRequest{JobId: job.GetJob().GetId(), LeaseToken: job.GetLeaseToken()}}})
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Shutdown() = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Shutdown did not finish after the worker settled")
	}
}

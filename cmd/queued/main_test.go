package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
)

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRunWithoutDatabaseURLStartsPrivatePostgres is `make run` on a fresh
// machine: no database URL, so queued creates a private PostgreSQL in its
// data dir, migrates it, serves gRPC and HTTP, works a job, and on
// cancellation (SIGTERM) shuts down cleanly and stops that PostgreSQL.
func TestRunWithoutDatabaseURLStartsPrivatePostgres(t *testing.T) {
	dir, err := os.MkdirTemp("", "queued-run-test-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	done := make(chan error, 1)
	env := map[string]string{"QUEUED_DATA_DIR": filepath.Join(dir, "data"), "QUEUED_LOG_LEVEL": "info"}
	go func() {
		done <- run(ctx, []string{"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0"}, func(k string) string { return env[k] }, &logs)
	}()
	serving := regexp.MustCompile(`msg="queued is serving" grpc=(\S+) http=(\S+)`)
	var grpcAddr, httpAddr string
	deadline := time.Now().Add(2 * time.Minute)
	for grpcAddr == "" {
		if m := serving.FindStringSubmatch(logs.String()); m != nil {
			grpcAddr, httpAddr = m[1], m[2]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run() returned early: %v\n%s", err, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not come up:\n%s", logs.String())
		}
	}
	resp, err := http.Get(fmt.Sprintf("http://%s/readyz", httpAddr))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /readyz = %v, %v", resp, err)
	}
	resp.Body.Close()

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := queuedv1.NewQueueServiceClient(conn)
	enq, err := client.Enqueue(ctx, &queuedv1.EnqueueRequest{Jobs: []*queuedv1.JobSpec{{Queue: "email", Name: "hello"}}})
	if err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	stream, err := client.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Open{Open: &queuedv1.LeaseOpen{Queues: []string{"email"}, Window: 1}}})
	var leased *queuedv1.LeasedJob
	for leased == nil {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv() = %v", err)
		}
		leased = m.GetJob()
	}
	if _, err := client.Ack(ctx, &queuedv1.AckRequest{JobId: leased.GetJob().GetId(), LeaseToken: leased.GetLeaseToken()}); err != nil {
		t.Fatalf("Ack() = %v", err)
	}
	got, err := client.GetJob(ctx, &queuedv1.GetJobRequest{Id: enq.GetJobs()[0].GetId()})
	if err != nil || got.GetJob().GetState() != queuedv1.JobState_JOB_STATE_COMPLETED {
		t.Fatalf("GetJob() = %v, %v; want completed", got, err)
	}
	stream.CloseSend()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run() = %v\n%s", err, logs.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("run() did not return after cancel:\n%s", logs.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "postgres", "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("private PostgreSQL still running after shutdown (postmaster.pid: %v)", err)
	}
}

package grpcserver_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/internal/queuedtest"
)

// worker is a raw Lease stream, as a test drives it.
type worker struct {
	t      testing.TB
	stream queuedv1.QueueService_LeaseClient
	cancel context.CancelFunc
	jobs   chan *queuedv1.LeasedJob
	events chan *queuedv1.LeaseResponse // everything else
	done   chan error
}

func openWorker(t testing.TB, client queuedv1.QueueServiceClient, open *queuedv1.LeaseOpen) *worker {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := client.Lease(ctx)
	if err != nil {
		cancel()
		t.Fatalf("Lease() = %v", err)
	}
	if err := stream.Send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Open{Open: open}}); err != nil {
		cancel()
		t.Fatalf("send open: %v", err)
	}
	w := &worker{t: t, stream: stream, cancel: cancel, jobs: make(chan *queuedv1.LeasedJob, 100000), events: make(chan *queuedv1.LeaseResponse, 10000), done: make(chan error, 1)}
	first, err := stream.Recv()
	if err != nil {
		cancel()
		t.Fatalf("receive opened: %v", err)
	}
	if first.GetOpened() == nil {
		cancel()
		t.Fatalf("first message = %v, want opened", first)
	}
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				w.done <- err
				close(w.jobs)
				return
			}
			if j := m.GetJob(); j != nil {
				w.jobs <- j
			} else if m.GetPing() == nil {
				w.events <- m
			}
		}
	}()
	t.Cleanup(cancel)
	return w
}

func (w *worker) next(timeout time.Duration) *queuedv1.LeasedJob {
	w.t.Helper()
	select {
	case j, ok := <-w.jobs:
		if !ok {
			w.t.Fatalf("stream ended while waiting for a job")
		}
		return j
	case <-time.After(timeout):
		w.t.Fatalf("no job within %v", timeout)
		return nil
	}
}

// expectNone asserts that no job arrives within d.
func (w *worker) expectNone(d time.Duration) {
	w.t.Helper()
	select {
	case j := <-w.jobs:
		w.t.Fatalf("got job %d, want none", j.GetJob().GetId())
	case <-time.After(d):
	}
}

func (w *worker) send(m *queuedv1.LeaseRequest) {
	w.t.Helper()
	if err := w.stream.Send(m); err != nil {
		w.t.Fatalf("send: %v", err)
	}
}

func (w *worker) ack(j *queuedv1.LeasedJob, result []byte) {
	w.send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Ack{Ack: &queuedv1.AckRequest{JobId: j.GetJob().GetId(), LeaseToken: j.GetLeaseToken(), Result: result}}})
}

// closeAndWait half-closes the stream and waits for the server to end it.
func (w *worker) closeAndWait() error {
	w.t.Helper()
	_ = w.stream.CloseSend()
	select {
	case err := <-w.done:
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	case <-time.After(10 * time.Second):
		w.t.Fatalf("stream did not end after CloseSend")
		return nil
	}
}

func enqueue(t testing.TB, s *queuedtest.Server, specs ...*queuedv1.JobSpec) []*queuedv1.EnqueuedJob {
	t.Helper()
	resp, err := s.Client.Enqueue(context.Background(), &queuedv1.EnqueueRequest{Jobs: specs})
	if err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	return resp.GetJobs()
}

func getJob(t testing.TB, s *queuedtest.Server, id int64) *queuedv1.Job {
	t.Helper()
	resp, err := s.Client.GetJob(context.Background(), &queuedv1.GetJobRequest{Id: id})
	if err != nil {
		t.Fatalf("GetJob(%d) = %v", id, err)
	}
	return resp.GetJob()
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wantCode(t testing.TB, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("error = %v, want code %v", err, code)
	}
}

func spec(queue string) *queuedv1.JobSpec {
	return &queuedv1.JobSpec{Queue: queue, Name: "test", Payload: []byte("p")}
}

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

func countRows(t testing.TB, s *queuedtest.Server, where string) int {
	t.Helper()
	var n int
	if err := s.Pool().QueryRow(context.Background(), `SELECT count(*) FROM queued_jobs WHERE `+where).Scan(&n); err != nil {
		t.Fatalf("count rows: %v", err)
	}
	return n
}

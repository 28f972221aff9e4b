package grpcserver_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/internal/queuedtest"
	"github.com/queued-dev/queued/service"
)

// fieldOf returns the field named by an InvalidArgument status.
func fieldOf(t *testing.T, err error) string {
	t.Helper()
	st := status.Convert(err)
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	t.Fatalf("status %v carries no field violation", err)
	return ""
}

func TestBadEnqueueIsRefusedNamingTheFieldAndWritesNothing(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t, queuedtest.WithService(func(c *service.Config) { c.MaxPayloadBytes = 1024 }))
	valid := func() *queuedv1.JobSpec { return &queuedv1.JobSpec{Queue: "q", Name: "n"} }
	with := func(f func(*queuedv1.JobSpec)) *queuedv1.JobSpec { sp := valid(); f(sp); return sp }
	tests := []struct {
		name  string
		jobs  []*queuedv1.JobSpec
		code  codes.Code
		field string // for InvalidArgument
	}{
		{"no jobs", nil, codes.InvalidArgument, "jobs"},
		{"empty queue", []*queuedv1.JobSpec{with(func(s *queuedv1.JobSpec) { s.Queue = "" })}, codes.InvalidArgument, "jobs[0].queue"},
		{"long queue", []*queuedv1.JobSpec{with(func(s *queuedv1.JobSpec) { s.Queue = strings.Repeat("q", 129) })}, codes.InvalidArgument, "jobs[0].queue"},
		{"empty name", []*queuedv1.JobSpec{with(func(s *queuedv1.JobSpec) { s.Name = "" })}, codes.InvalidArgument, "jobs[0].name"},
		{"long name", []*queuedv1.JobSpec{with(func(s *queuedv1.JobSpec) { s.Name = strings.Repeat("n", 200) })}, codes.InvalidArgument, "jobs[0].name"},
		{"negative delay", []*queuedv1.JobSpec{with(func(s *queuedv1.JobSpec) { s.Delay = durationpb.New(-time.Second) })}, codes.InvalidArgument, "jobs[0].delay"},
		{"run_at and delay", []*queuedv1.JobSpec{with(func(s *queuedv1.JobSpec) {
			s.Delay = durationpb.New(time.Second)
			s.RunAt = timestamppb.Now()
		})}, codes.InvalidArgument, "jobs[0].run_at"},
		{"max_attempts below one", []*queuedv1.JobSpec{with(func(s *queuedv1.JobSpec) { s.MaxAttempts = -1 })}, codes.InvalidArgument, "jobs[0].max_attempts"},
		{"unknown backoff kind", []*queuedv1.JobSpec{with(func(s *queuedv1.JobSpec) {
			s.Backoff = &queuedv1.Backoff{Kind: 42, Base: durationpb.New(time.Second)}
		})}, codes.InvalidArgument, "jobs[0].backoff.kind"},
		{"backoff without base", []*queuedv1.JobSpec{with(func(s *queuedv1.JobSpec) {
			s.Backoff = &queuedv1.Backoff{Kind: queuedv1.Backoff_KIND_FIXED}
		})}, codes.InvalidArgument, "jobs[0].backoff.base"},
		{"jitter out of range", []*queuedv1.JobSpec{with(func(s *queuedv1.JobSpec) {
			s.Backoff = &queuedv1.Backoff{Kind: queuedv1.Backoff_KIND_FIXED, Base: durationpb.New(time.Second), Jitter: 2}
		})}, codes.InvalidArgument, "jobs[0].backoff.jitter"},
		{"payload over the limit", []*queuedv1.JobSpec{with(func(s *queuedv1.JobSpec) { s.Payload = make([]byte, 1025) })}, codes.ResourceExhausted, ""},
		// One bad job in a batch: the valid ones are not written either.
		{"bad job among good ones", []*queuedv1.JobSpec{valid(), valid(), with(func(s *queuedv1.JobSpec) { s.Queue = "" })}, codes.InvalidArgument, "jobs[2].queue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Client.Enqueue(context.Background(), &queuedv1.EnqueueRequest{Jobs: tt.jobs})
			wantCode(t, err, tt.code)
			if tt.field != "" {
				if got := fieldOf(t, err); got != tt.field {
					t.Fatalf("field = %q, want %q (status %v)", got, tt.field, err)
				}
			}
			if tt.code == codes.ResourceExhausted && !strings.Contains(status.Convert(err).Message(), "payload") {
				t.Fatalf("message %q does not name the payload", status.Convert(err).Message())
			}
		})
	}
	if n := countRows(t, s, "true"); n != 0 {
		t.Fatalf("rows after refused enqueues = %d, want 0", n)
	}
}

func TestBadSettlementsAndStreamsAreRefusedNamingTheField(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t, queuedtest.WithService(func(c *service.Config) { c.MaxPayloadBytes = 1024 }))
	id := enqueue(t, s, spec("q"))[0].GetId()
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"q"}, Window: 1})
	j := w.next(5 * time.Second)
	ctx := context.Background()

	_, err := s.Client.Ack(ctx, &queuedv1.AckRequest{JobId: 0, LeaseToken: "x"})
	wantCode(t, err, codes.InvalidArgument)
	if f := fieldOf(t, err); f != "job_id" {
		t.Fatalf("field = %q, want job_id", f)
	}
	_, err = s.Client.Ack(ctx, &queuedv1.AckRequest{JobId: id})
	if f := fieldOf(t, err); f != "lease_token" {
		t.Fatalf("field = %q, want lease_token", f)
	}
	_, err = s.Client.Ack(ctx, &queuedv1.AckRequest{JobId: id, LeaseToken: j.GetLeaseToken(), Result: make([]byte, 2000)})
	wantCode(t, err, codes.ResourceExhausted)
	_, err = s.Client.Nack(ctx, &queuedv1.NackRequest{JobId: id, LeaseToken: j.GetLeaseToken(), RetryDelay: durationpb.New(-time.Second)})
	if f := fieldOf(t, err); f != "retry_delay" {
		t.Fatalf("field = %q, want retry_delay", f)
	}
	_, err = s.Client.Extend(ctx, &queuedv1.ExtendRequest{JobId: id, LeaseToken: j.GetLeaseToken(), LeaseDuration: durationpb.New(1000 * time.Hour)})
	if f := fieldOf(t, err); f != "lease_duration" {
		t.Fatalf("field = %q, want lease_duration", f)
	}
	// None of that touched the job.
	if got := getJob(t, s, id); got.GetState() != queuedv1.JobState_JOB_STATE_RUNNING || len(got.GetErrors()) != 0 || got.GetResult() != nil {
		t.Fatalf("job after refused settlements = %v, want untouched", got)
	}

	streamTests := []struct {
		name  string
		first *queuedv1.LeaseRequest
		field string
	}{
		{"no open", &queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_SetWindow{SetWindow: &queuedv1.SetWindow{Window: 1}}}, "open"},
		{"no queues", &queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Open{Open: &queuedv1.LeaseOpen{Window: 1}}}, "open.queues"},
		{"empty queue name", &queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Open{Open: &queuedv1.LeaseOpen{Queues: []string{"a", ""}, Window: 1}}}, "open.queues[1]"},
		{"negative window", &queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Open{Open: &queuedv1.LeaseOpen{Queues: []string{"a"}, Window: -1}}}, "open.window"},
		{"huge window", &queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Open{Open: &queuedv1.LeaseOpen{Queues: []string{"a"}, Window: 1 << 30}}}, "open.window"},
		{"huge lease", &queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Open{Open: &queuedv1.LeaseOpen{Queues: []string{"a"}, Window: 1, LeaseDuration: durationpb.New(1000 * time.Hour)}}}, "open.lease_duration"},
	}
	for _, tt := range streamTests {
		t.Run(tt.name, func(t *testing.T) {
			stream, err := s.Client.Lease(ctx)
			if err != nil {
				t.Fatalf("Lease() = %v", err)
			}
			if err := stream.Send(tt.first); err != nil {
				t.Fatalf("send: %v", err)
			}
			_, err = stream.Recv()
			wantCode(t, err, codes.InvalidArgument)
			if f := fieldOf(t, err); f != tt.field {
				t.Fatalf("field = %q, want %q", f, tt.field)
			}
		})
	}
}

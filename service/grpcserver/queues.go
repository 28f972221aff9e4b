package grpcserver

import (
	"context"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/service"
)

// QueueAdminServer implements queued.v1.QueueAdminService.
type QueueAdminServer struct {
	queuedv1.UnimplementedQueueAdminServiceServer
	svc *service.Service
	srv *Server // for the one error mapping
}

var _ queuedv1.QueueAdminServiceServer = (*QueueAdminServer)(nil)

// NewQueueAdminServer returns a QueueAdminServer for svc.
func NewQueueAdminServer(svc *service.Service, log *slog.Logger) *QueueAdminServer {
	return &QueueAdminServer{svc: svc, srv: New(svc, log)}
}

// Register adds the service to a gRPC server.
func (s *QueueAdminServer) Register(g *grpc.Server) {
	queuedv1.RegisterQueueAdminServiceServer(g, s)
}

// PauseQueue pauses a queue on every replica.
func (s *QueueAdminServer) PauseQueue(ctx context.Context, req *queuedv1.PauseQueueRequest) (*queuedv1.PauseQueueResponse, error) {
	q, err := s.svc.PauseQueue(ctx, req.GetQueue())
	if err != nil {
		return nil, s.srv.toStatus(ctx, err)
	}
	return &queuedv1.PauseQueueResponse{Queue: queueToProto(q)}, nil
}

// ResumeQueue resumes a paused queue.
func (s *QueueAdminServer) ResumeQueue(ctx context.Context, req *queuedv1.ResumeQueueRequest) (*queuedv1.ResumeQueueResponse, error) {
	q, err := s.svc.ResumeQueue(ctx, req.GetQueue())
	if err != nil {
		return nil, s.srv.toStatus(ctx, err)
	}
	return &queuedv1.ResumeQueueResponse{Queue: queueToProto(q)}, nil
}

// SetRateLimit sets or clears a queue's rate limit.
func (s *QueueAdminServer) SetRateLimit(ctx context.Context, req *queuedv1.SetRateLimitRequest) (*queuedv1.SetRateLimitResponse, error) {
	per, err := durationFromProto(req.GetPer(), "per")
	if err != nil {
		return nil, s.srv.toStatus(ctx, err)
	}
	q, err := s.svc.SetRateLimit(ctx, req.GetQueue(), service.RateLimit{Max: int(req.GetMax()), Per: per})
	if err != nil {
		return nil, s.srv.toStatus(ctx, err)
	}
	return &queuedv1.SetRateLimitResponse{Queue: queueToProto(q)}, nil
}

// GetQueue returns a queue's settings and counts.
func (s *QueueAdminServer) GetQueue(ctx context.Context, req *queuedv1.GetQueueRequest) (*queuedv1.GetQueueResponse, error) {
	q, err := s.svc.GetQueue(ctx, req.GetQueue())
	if err != nil {
		return nil, s.srv.toStatus(ctx, err)
	}
	return &queuedv1.GetQueueResponse{Queue: queueToProto(q)}, nil
}

// ListQueueSettings returns every known queue with its settings.
func (s *QueueAdminServer) ListQueueSettings(ctx context.Context, _ *queuedv1.ListQueueSettingsRequest) (*queuedv1.ListQueueSettingsResponse, error) {
	all, err := s.svc.ListQueueSettings(ctx)
	if err != nil {
		return nil, s.srv.toStatus(ctx, err)
	}
	resp := &queuedv1.ListQueueSettingsResponse{Queues: make([]*queuedv1.Queue, len(all))}
	for i, q := range all {
		resp.Queues[i] = queueToProto(q)
	}
	return resp, nil
}

func queueToProto(q service.QueueInfo) *queuedv1.Queue {
	out := &queuedv1.Queue{
		Name:   q.Queue,
		Paused: q.Paused,
		Counts: &queuedv1.QueueJobCounts{
			Available:       q.Counts[service.StateAvailable],
			Scheduled:       q.Counts[service.StateScheduled],
			Running:         q.Counts[service.StateRunning],
			WaitingChildren: q.Counts[service.StateWaitingChildren],
		},
		UpdatedAt: timestamp(q.UpdatedAt),
	}
	if q.Limit.Limited() {
		out.RateLimit = &queuedv1.RateLimit{Max: int32(q.Limit.Max), Per: durationpb.New(q.Limit.Per)}
	}
	return out
}

// Package grpcserver is the gRPC adapter of queued: it decodes requests,
// calls the service, and encodes replies and errors. It owns no behaviour of
// its own beyond the Lease stream's plumbing.
package grpcserver

import (
	"context"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/service"
)

// Server implements queued.v1.QueueService.
type Server struct {
	queuedv1.UnimplementedQueueServiceServer
	svc *service.Service
	log *slog.Logger
}

var _ queuedv1.QueueServiceServer = (*Server)(nil)

// New returns a Server for svc.
func New(svc *service.Service, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{svc: svc, log: log}
}

// Register adds the QueueService and the FlowService to a gRPC server.
func (s *Server) Register(g *grpc.Server) {
	queuedv1.RegisterQueueServiceServer(g, s)
	queuedv1.RegisterFlowServiceServer(g, &FlowServer{srv: s})
	queuedv1.RegisterWatchServiceServer(g, &watchServer{s: s})
}

// Enqueue inserts jobs, all or none.
func (s *Server) Enqueue(ctx context.Context, req *queuedv1.EnqueueRequest) (*queuedv1.EnqueueResponse, error) {
	specs := make([]service.JobSpec, len(req.GetJobs()))
	for i, p := range req.GetJobs() {
		spec, err := jobSpecFromProto(p, fmt.Sprintf("jobs[%d]", i))
		if err != nil {
			return nil, s.toStatus(ctx, err)
		}
		specs[i] = spec
	}
	out, err := s.svc.Enqueue(ctx, specs)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	resp := &queuedv1.EnqueueResponse{Jobs: make([]*queuedv1.EnqueuedJob, len(out))}
	for i, e := range out {
		resp.Jobs[i] = &queuedv1.EnqueuedJob{Id: e.ID, Duplicate: e.Duplicate, State: stateToProto[e.State]}
	}
	return resp, nil
}

// Ack completes a leased job, with its continuations in the same
// transaction.
func (s *Server) Ack(ctx context.Context, req *queuedv1.AckRequest) (*queuedv1.AckResponse, error) {
	ids, err := s.ack(ctx, s.svc, req, "then")
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &queuedv1.AckResponse{ThenIds: ids}, nil
}

// Nack fails the current attempt of a leased job.
func (s *Server) Nack(ctx context.Context, req *queuedv1.NackRequest) (*queuedv1.NackResponse, error) {
	p, err := nackParams(req, "")
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	job, err := s.svc.Nack(ctx, p)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	resp := &queuedv1.NackResponse{State: stateToProto[job.State]}
	if job.State == service.StateScheduled || job.State == service.StateAvailable {
		resp.NextRunAt = timestamp(job.RunAt)
	}
	return resp, nil
}

// Extend renews a lease.
func (s *Server) Extend(ctx context.Context, req *queuedv1.ExtendRequest) (*queuedv1.ExtendResponse, error) {
	d, err := durationFromProto(req.GetLeaseDuration(), "lease_duration")
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	exp, err := s.svc.Extend(ctx, leaseRef(req.GetJobId(), req.GetLeaseToken()), d)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &queuedv1.ExtendResponse{LeaseExpiresAt: timestamp(exp)}, nil
}

// Release hands back an unstarted job.
func (s *Server) Release(ctx context.Context, req *queuedv1.ReleaseRequest) (*queuedv1.ReleaseResponse, error) {
	if err := s.svc.Release(ctx, leaseRef(req.GetJobId(), req.GetLeaseToken())); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &queuedv1.ReleaseResponse{}, nil
}

// UpdateProgress stores a progress report.
func (s *Server) UpdateProgress(ctx context.Context, req *queuedv1.UpdateProgressRequest) (*queuedv1.UpdateProgressResponse, error) {
	if err := s.svc.UpdateProgress(ctx, leaseRef(req.GetJobId(), req.GetLeaseToken()), req.GetProgress()); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &queuedv1.UpdateProgressResponse{}, nil
}

// GetJob returns one job.
func (s *Server) GetJob(ctx context.Context, req *queuedv1.GetJobRequest) (*queuedv1.GetJobResponse, error) {
	job, err := s.svc.GetJob(ctx, req.GetId())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &queuedv1.GetJobResponse{Job: jobToProto(job)}, nil
}

// CancelJob cancels an unfinished job.
func (s *Server) CancelJob(ctx context.Context, req *queuedv1.CancelJobRequest) (*queuedv1.CancelJobResponse, error) {
	job, err := s.svc.CancelJob(ctx, req.GetId(), req.GetReason())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &queuedv1.CancelJobResponse{Job: jobToProto(job)}, nil
}

package grpcserver

import (
	"context"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/service"
)

// AdminServer implements queued.v1.AdminService.
type AdminServer struct {
	queuedv1.UnimplementedAdminServiceServer
	svc *service.Service
	srv *Server // for the one error mapping
}

var _ queuedv1.AdminServiceServer = (*AdminServer)(nil)

// NewAdminServer returns an AdminServer for svc.
func NewAdminServer(svc *service.Service, log *slog.Logger) *AdminServer {
	return &AdminServer{svc: svc, srv: New(svc, log)}
}

// Register adds the service to a gRPC server.
func (s *AdminServer) Register(g *grpc.Server) {
	queuedv1.RegisterAdminServiceServer(g, s)
}

// ListJobs returns one page of jobs.
func (s *AdminServer) ListJobs(ctx context.Context, req *queuedv1.ListJobsRequest) (*queuedv1.ListJobsResponse, error) {
	p, err := listJobsFromProto(req)
	if err != nil {
		return nil, s.srv.toStatus(ctx, err)
	}
	page, err := s.svc.ListJobs(ctx, p)
	if err != nil {
		return nil, s.srv.toStatus(ctx, err)
	}
	resp := &queuedv1.ListJobsResponse{Jobs: make([]*queuedv1.Job, len(page.Jobs)), NextPageToken: page.NextPageToken}
	for i, j := range page.Jobs {
		resp.Jobs[i] = jobToProto(j)
	}
	return resp, nil
}

// RetryJob makes a failed or cancelled job available again.
func (s *AdminServer) RetryJob(ctx context.Context, req *queuedv1.RetryJobRequest) (*queuedv1.RetryJobResponse, error) {
	job, err := s.svc.RetryJob(ctx, req.GetId())
	if err != nil {
		return nil, s.srv.toStatus(ctx, err)
	}
	return &queuedv1.RetryJobResponse{Job: jobToProto(job)}, nil
}

// DeleteJob deletes a finished job.
func (s *AdminServer) DeleteJob(ctx context.Context, req *queuedv1.DeleteJobRequest) (*queuedv1.DeleteJobResponse, error) {
	st, err := s.svc.DeleteJob(ctx, req.GetId())
	if err != nil {
		return nil, s.srv.toStatus(ctx, err)
	}
	return &queuedv1.DeleteJobResponse{State: stateToProto[st]}, nil
}

// ListQueues returns every queue with its counts by state.
func (s *AdminServer) ListQueues(ctx context.Context, _ *queuedv1.ListQueuesRequest) (*queuedv1.ListQueuesResponse, error) {
	qs, now, err := s.svc.ListQueues(ctx)
	if err != nil {
		return nil, s.srv.toStatus(ctx, err)
	}
	resp := &queuedv1.ListQueuesResponse{
		Queues:           make([]*queuedv1.QueueOverview, len(qs)),
		FinishedCountCap: service.FinishedCountCap,
		Now:              timestamp(now),
	}
	for i, q := range qs {
		resp.Queues[i] = &queuedv1.QueueOverview{
			Queue:             q.Queue,
			Scheduled:         q.Counts[service.StateScheduled],
			Available:         q.Counts[service.StateAvailable],
			Running:           q.Counts[service.StateRunning],
			WaitingChildren:   q.Counts[service.StateWaitingChildren],
			Completed:         q.Counts[service.StateCompleted],
			Failed:            q.Counts[service.StateFailed],
			Cancelled:         q.Counts[service.StateCancelled],
			FinishedCapped:    q.FinishedCapped,
			OldestAvailableAt: timestamp(q.OldestAvailableAt),
		}
	}
	return resp, nil
}

var stateFromProto = func() map[queuedv1.JobState]service.JobState {
	m := make(map[queuedv1.JobState]service.JobState, len(stateToProto))
	for k, v := range stateToProto {
		m[v] = k
	}
	return m
}()

func listJobsFromProto(req *queuedv1.ListJobsRequest) (service.ListJobsParams, error) {
	p := service.ListJobsParams{
		Filter:         service.JobFilter{Queue: req.GetQueue(), Name: req.GetName()},
		Limit:          int(req.GetLimit()),
		PageToken:      req.GetPageToken(),
		IncludePayload: req.GetIncludePayload(),
	}
	for i, st := range req.GetStates() {
		s, ok := stateFromProto[st]
		if !ok {
			return p, &service.ValidationError{Field: fmt.Sprintf("states[%d]", i), Reason: fmt.Sprintf("unknown state %v", st)}
		}
		p.Filter.States = append(p.Filter.States, s)
	}
	switch req.GetOrder() {
	case queuedv1.ListJobsRequest_ORDER_UNSPECIFIED, queuedv1.ListJobsRequest_NEWEST_FIRST:
		p.Order = service.NewestFirst
	case queuedv1.ListJobsRequest_OLDEST_FIRST:
		p.Order = service.OldestFirst
	default:
		return p, &service.ValidationError{Field: "order", Reason: fmt.Sprintf("unknown value %d", req.GetOrder())}
	}
	return p, nil
}

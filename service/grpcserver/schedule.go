package grpcserver

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/service"
)

// nextFireTimesDefault is how many upcoming fire times GetSchedule returns
// when the request names no count.
const nextFireTimesDefault = 5

// ScheduleServer implements queued.v1.ScheduleService.
type ScheduleServer struct {
	queuedv1.UnimplementedScheduleServiceServer
	svc *service.Service
	srv *Server // for the one error mapping
}

var _ queuedv1.ScheduleServiceServer = (*ScheduleServer)(nil)

// NewScheduleServer returns a ScheduleServer for svc.
func NewScheduleServer(svc *service.Service, log *slog.Logger) *ScheduleServer {
	return &ScheduleServer{svc: svc, srv: New(svc, log)}
}

// Register adds the service to a gRPC server.
func (s *ScheduleServer) Register(g *grpc.Server) {
	queuedv1.RegisterScheduleServiceServer(g, s)
}

// UpsertSchedule creates or replaces a schedule.
func (s *ScheduleServer) UpsertSchedule(ctx context.Context, req *queuedv1.UpsertScheduleRequest) (*queuedv1.UpsertScheduleResponse, error) {
	sc, err := scheduleFromProto(req.GetSchedule())
	if err != nil {
		return nil, s.srv.toStatus(ctx, err)
	}
	out, err := s.svc.UpsertSchedule(ctx, sc)
	if err != nil {
		return nil, s.srv.toStatus(ctx, err)
	}
	return &queuedv1.UpsertScheduleResponse{Schedule: scheduleToProto(out)}, nil
}

// GetSchedule returns a schedule and its upcoming fire times.
func (s *ScheduleServer) GetSchedule(ctx context.Context, req *queuedv1.GetScheduleRequest) (*queuedv1.GetScheduleResponse, error) {
	n := int(req.GetNextCount())
	if n == 0 {
		n = nextFireTimesDefault
	}
	sc, next, err := s.svc.GetSchedule(ctx, req.GetName(), n)
	if err != nil {
		return nil, s.srv.toStatus(ctx, err)
	}
	resp := &queuedv1.GetScheduleResponse{Schedule: scheduleToProto(sc)}
	for _, t := range next {
		resp.NextFireTimes = append(resp.NextFireTimes, timestamppb.New(t))
	}
	return resp, nil
}

// ListSchedules returns every schedule.
func (s *ScheduleServer) ListSchedules(ctx context.Context, _ *queuedv1.ListSchedulesRequest) (*queuedv1.ListSchedulesResponse, error) {
	all, err := s.svc.ListSchedules(ctx)
	if err != nil {
		return nil, s.srv.toStatus(ctx, err)
	}
	resp := &queuedv1.ListSchedulesResponse{Schedules: make([]*queuedv1.Schedule, len(all))}
	for i, sc := range all {
		resp.Schedules[i] = scheduleToProto(sc)
	}
	return resp, nil
}

// PauseSchedule pauses a schedule.
func (s *ScheduleServer) PauseSchedule(ctx context.Context, req *queuedv1.PauseScheduleRequest) (*queuedv1.PauseScheduleResponse, error) {
	sc, err := s.svc.PauseSchedule(ctx, req.GetName())
	if err != nil {
		return nil, s.srv.toStatus(ctx, err)
	}
	return &queuedv1.PauseScheduleResponse{Schedule: scheduleToProto(sc)}, nil
}

// ResumeSchedule resumes a paused schedule.
func (s *ScheduleServer) ResumeSchedule(ctx context.Context, req *queuedv1.ResumeScheduleRequest) (*queuedv1.ResumeScheduleResponse, error) {
	sc, err := s.svc.ResumeSchedule(ctx, req.GetName())
	if err != nil {
		return nil, s.srv.toStatus(ctx, err)
	}
	return &queuedv1.ResumeScheduleResponse{Schedule: scheduleToProto(sc)}, nil
}

// DeleteSchedule removes a schedule.
func (s *ScheduleServer) DeleteSchedule(ctx context.Context, req *queuedv1.DeleteScheduleRequest) (*queuedv1.DeleteScheduleResponse, error) {
	if err := s.svc.DeleteSchedule(ctx, req.GetName()); err != nil {
		return nil, s.srv.toStatus(ctx, err)
	}
	return &queuedv1.DeleteScheduleResponse{}, nil
}

// TriggerSchedule enqueues a schedule's job now.
func (s *ScheduleServer) TriggerSchedule(ctx context.Context, req *queuedv1.TriggerScheduleRequest) (*queuedv1.TriggerScheduleResponse, error) {
	id, err := s.svc.TriggerSchedule(ctx, req.GetName())
	if err != nil {
		return nil, s.srv.toStatus(ctx, err)
	}
	return &queuedv1.TriggerScheduleResponse{JobId: id}, nil
}

var catchUpFromProto = map[queuedv1.Schedule_CatchUp]service.CatchUpPolicy{
	queuedv1.Schedule_CATCH_UP_UNSPECIFIED: "",
	queuedv1.Schedule_CATCH_UP_SKIP:        service.CatchUpSkip,
	queuedv1.Schedule_CATCH_UP_ONE:         service.CatchUpOne,
	queuedv1.Schedule_CATCH_UP_ALL:         service.CatchUpAll,
}

var overlapFromProto = map[queuedv1.Schedule_Overlap]service.OverlapPolicy{
	queuedv1.Schedule_OVERLAP_UNSPECIFIED: "",
	queuedv1.Schedule_OVERLAP_ALLOW:       service.OverlapAllow,
	queuedv1.Schedule_OVERLAP_SKIP:        service.OverlapSkip,
}

func scheduleFromProto(p *queuedv1.Schedule) (service.Schedule, error) {
	if p == nil {
		return service.Schedule{}, &service.ValidationError{Field: "schedule", Reason: "must be set"}
	}
	t := p.GetJob()
	if t == nil {
		return service.Schedule{}, &service.ValidationError{Field: "job", Reason: "must be set: the job template needs at least a queue and a name"}
	}
	backoff, err := backoffFromProto(t.GetBackoff(), "job.backoff")
	if err != nil {
		return service.Schedule{}, err
	}
	catchUp, ok := catchUpFromProto[p.GetCatchUp()]
	if !ok {
		return service.Schedule{}, &service.ValidationError{Field: "catch_up", Reason: fmt.Sprintf("unknown value %d", p.GetCatchUp())}
	}
	overlap, ok := overlapFromProto[p.GetOverlap()]
	if !ok {
		return service.Schedule{}, &service.ValidationError{Field: "overlap", Reason: fmt.Sprintf("unknown value %d", p.GetOverlap())}
	}
	window, err := durationFromProto(p.GetCatchUpWindow(), "catch_up_window")
	if err != nil {
		return service.Schedule{}, err
	}
	sc := service.Schedule{
		Name:     p.GetName(),
		Spec:     p.GetSpec(),
		TimeZone: p.GetTimeZone(),
		Job: service.JobTemplate{
			Queue: t.GetQueue(), Name: t.GetName(), Payload: t.GetPayload(), Metadata: t.GetMetadata(),
			Priority: t.GetPriority(), MaxAttempts: t.GetMaxAttempts(), Backoff: backoff,
		},
		Paused:        p.GetPaused(),
		CatchUp:       catchUp,
		CatchUpWindow: window,
		Overlap:       overlap,
	}
	if sc.StartAt, err = timeFromProto(p.GetStartAt(), "start_at"); err != nil {
		return service.Schedule{}, err
	}
	if sc.EndAt, err = timeFromProto(p.GetEndAt(), "end_at"); err != nil {
		return service.Schedule{}, err
	}
	return sc, nil
}

func scheduleToProto(sc service.Schedule) *queuedv1.Schedule {
	out := &queuedv1.Schedule{
		Name:     sc.Name,
		Spec:     sc.Spec,
		TimeZone: sc.TimeZone,
		Job: &queuedv1.ScheduleJobTemplate{
			Queue: sc.Job.Queue, Name: sc.Job.Name, Payload: sc.Job.Payload, Metadata: sc.Job.Metadata,
			Priority: sc.Job.Priority, MaxAttempts: sc.Job.MaxAttempts, Backoff: backoffToProto(sc.Job.Backoff),
		},
		StartAt:    timestamp(sc.StartAt),
		EndAt:      timestamp(sc.EndAt),
		Paused:     sc.Paused,
		LastFireAt: timestamp(sc.LastFireAt),
		LastJobId:  sc.LastJobID,
		CreatedAt:  timestamp(sc.CreatedAt),
		UpdatedAt:  timestamp(sc.UpdatedAt),
	}
	if !sc.Paused {
		out.NextFireAt = timestamp(sc.NextFireAt)
	}
	for k, v := range catchUpFromProto {
		if v == sc.CatchUp && v != "" {
			out.CatchUp = k
		}
	}
	for k, v := range overlapFromProto {
		if v == sc.Overlap && v != "" {
			out.Overlap = k
		}
	}
	if sc.CatchUpWindow > 0 {
		out.CatchUpWindow = durationpb.New(sc.CatchUpWindow)
	}
	return out
}

func timeFromProto(ts *timestamppb.Timestamp, field string) (time.Time, error) {
	if ts == nil {
		return time.Time{}, nil
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, &service.ValidationError{Field: field, Reason: err.Error()}
	}
	return ts.AsTime(), nil
}

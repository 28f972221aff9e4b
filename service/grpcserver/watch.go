package grpcserver

import (
	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/service"
)

// watchServer implements queued.v1.WatchService. It is a type of its own
// because the generated QueueService and WatchService bases cannot both be
// embedded in Server.
type watchServer struct {
	queuedv1.UnimplementedWatchServiceServer
	s *Server
}

var _ queuedv1.WatchServiceServer = (*watchServer)(nil)

// Watch streams job changes until the client leaves or the server drains.
func (w *watchServer) Watch(req *queuedv1.WatchRequest, stream queuedv1.WatchService_WatchServer) error {
	ctx := stream.Context()
	p := service.WatchParams{
		Filter: service.WatchFilter{
			JobIDs: req.GetJobIds(),
			Queue:  req.GetQueue(),
			Names:  req.GetNames(),
			FlowID: req.GetFlowId(),
		},
		Cursor: req.GetCursor(),
	}
	for _, k := range req.GetKinds() {
		p.Filter.Kinds = append(p.Filter.Kinds, service.EventKind(k))
	}
	err := w.s.svc.Watch(ctx, p, func(e service.WatchEvent) error {
		return stream.Send(watchEventToProto(e))
	})
	return w.s.toStatus(ctx, err)
}

// Proto enum values and service.EventKind share their numbers; the test of
// every kind keeps them in step.
func watchEventToProto(e service.WatchEvent) *queuedv1.WatchEvent {
	out := &queuedv1.WatchEvent{Kind: queuedv1.WatchEventKind(e.Kind), Cursor: e.Cursor.String()}
	if e.Kind == service.EventCheckpoint {
		return out
	}
	out.Job = jobToProto(e.Job)
	if e.Kind == service.EventRetryScheduled || e.Kind == service.EventFailed {
		if n := len(e.Job.Errors); n > 0 {
			last := e.Job.Errors[n-1]
			out.Error = &queuedv1.AttemptError{Attempt: last.Attempt, Message: last.Message, At: timestamp(last.At)}
		}
	}
	return out
}

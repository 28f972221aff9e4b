package grpcserver

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/queued-dev/queued/service"
)

// toStatus maps a domain error to a gRPC status. It is the only place that
// does: handlers return toStatus(err) and nothing else.
func (s *Server) toStatus(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var ve *service.ValidationError
	var tl *service.TooLargeError
	var ce *service.CursorExpiredError
	var se *service.StateError
	switch {
	case errors.As(err, &se):
		return status.Error(codes.FailedPrecondition, se.Error())
	case errors.As(err, &ce):
		return status.Error(codes.OutOfRange, ce.Error())
	case errors.Is(err, service.ErrWatcherTooSlow):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.As(err, &ve):
		st := status.New(codes.InvalidArgument, ve.Error())
		if d, derr := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: ve.Field, Description: ve.Reason},
		}}); derr == nil {
			st = d
		}
		return st.Err()
	case errors.As(err, &tl):
		return status.Error(codes.ResourceExhausted, tl.Error())
	case errors.Is(err, service.ErrLeaseLost):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, service.ErrFinished):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, service.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, service.ErrAlreadyExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, service.ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, service.ErrUnavailable):
		// Transient; the health status says so too. Not logged per call.
		return status.Error(codes.Unavailable, "database unavailable, retry with backoff")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	s.log.ErrorContext(ctx, "internal error", slog.Any("err", err))
	return status.Error(codes.Internal, "internal error")
}

package app

import (
	"context"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// skipQuietCalls wraps the logging interceptor so that calls ending with a
// quiet status (quietCodes says debug) cost nothing when debug logging is
// off. The logging interceptor builds its fields before it knows the
// outcome; on the Enqueue and Ack paths that was 6-9% of queued's CPU
// (see docs/benchmarks.md) for lines nobody would see. Calls that are
// logged go through the interceptor with their outcome replayed, so their
// log lines are as before, except that the duration it reports does not
// include the handler.
func skipQuietCalls(log *slog.Logger, logged grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if log.Enabled(ctx, slog.LevelDebug) {
			return logged(ctx, req, info, handler)
		}
		resp, err := handler(ctx, req)
		if int(quietCodes(status.Code(err))) <= int(slog.LevelDebug) {
			return resp, err
		}
		return logged(ctx, req, info, func(context.Context, any) (any, error) { return resp, err })
	}
}

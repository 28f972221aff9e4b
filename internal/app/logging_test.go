package app

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestSkipQuietCallsLogsOnlyWhatTheLevelShows(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		level  slog.Level
		err    error
		logged bool
	}{
		{"ok at info", slog.LevelInfo, nil, false},
		{"lost lease at info", slog.LevelInfo, status.Error(codes.FailedPrecondition, "lease lost"), false},
		{"internal at info", slog.LevelInfo, status.Error(codes.Internal, "boom"), true},
		{"ok at debug", slog.LevelDebug, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tc.level}))
			icpt := skipQuietCalls(log, logging.UnaryServerInterceptor(interceptorLogger(log), logging.WithLogOnEvents(logging.FinishCall), logging.WithLevels(quietCodes)))
			calls := 0
			resp, err := icpt(context.Background(), "req", &grpc.UnaryServerInfo{FullMethod: "/queued.v1.QueueService/Ack"}, func(context.Context, any) (any, error) {
				calls++
				return "resp", tc.err
			})
			if calls != 1 || resp != "resp" || status.Code(err) != status.Code(tc.err) {
				t.Fatalf("handler ran %d times, returned %v, %v; want once, resp, %v", calls, resp, err, tc.err)
			}
			if got := strings.Contains(buf.String(), "queued.v1.QueueService"); got != tc.logged {
				t.Fatalf("logged = %v, want %v; log:\n%s", got, tc.logged, buf.String())
			}
		})
	}
}

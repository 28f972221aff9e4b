package queued

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
)

// unaryTimeout bounds one unary settlement call made while no stream is up.
const unaryTimeout = 10 * time.Second

// settle delivers an ack, nack, extend, release or progress report for aj
// and returns the server's answer. It uses the current stream, whichever
// stream leased the job (the lease token is what the server checks), or a
// unary call while no stream is up. When the connection breaks before the
// answer it tries again until the lease has expired: by then the server
// has taken the job back and the answer no longer matters. A retry of a
// settlement that did land is refused as FAILED_PRECONDITION, which is
// safe: the first one counted.
func (w *Worker) settle(ctx context.Context, aj *activeJob, req *queuedv1.LeaseRequest) (*queuedv1.Reply, error) {
	backoff := 50 * time.Millisecond
	for tries := 1; ; tries++ {
		w.mu.Lock()
		conn, changed, expires := w.conn, w.connChanged, aj.expires
		w.mu.Unlock()
		var reply *queuedv1.Reply
		var err error
		if conn != nil {
			reply, err = conn.call(ctx, w.refs.Add(1), req)
			if err == nil && reply.GetCode() != int32(codes.OK) {
				err = status.Error(codes.Code(reply.GetCode()), reply.GetMessage())
			}
		} else {
			reply, err = w.unary(ctx, req)
		}
		if !retryable(err) {
			if err != nil && tries > 1 && IsLeaseLost(err) {
				err = fmt.Errorf("%w (on a retry after the connection broke, so the first try may have landed)", err)
			}
			return reply, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !expires.IsZero() && time.Now().After(expires) {
			return nil, fmt.Errorf("%w: the lease expired while the server was unreachable (last error: %v)", ErrLeaseLost, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changed:
		case <-time.After(jitter(backoff)):
		}
		backoff = min(backoff*2, time.Second)
	}
}

// retryable reports whether a settlement failed for want of a connection,
// as opposed to an answer from the server.
func retryable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, errConnLost) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return false
}

// unary sends a stream settlement as the equivalent unary call, answering
// in the stream's Reply form.
func (w *Worker) unary(ctx context.Context, req *queuedv1.LeaseRequest) (*queuedv1.Reply, error) {
	ctx, cancel := context.WithTimeout(ctx, unaryTimeout)
	defer cancel()
	api := w.client.api
	reply := &queuedv1.Reply{}
	var err error
	switch m := req.GetMsg().(type) {
	case *queuedv1.LeaseRequest_Ack:
		_, err = api.Ack(ctx, m.Ack)
	case *queuedv1.LeaseRequest_Nack:
		var resp *queuedv1.NackResponse
		if resp, err = api.Nack(ctx, m.Nack); err == nil {
			reply.State = resp.GetState()
		}
	case *queuedv1.LeaseRequest_Extend:
		var resp *queuedv1.ExtendResponse
		if resp, err = api.Extend(ctx, m.Extend); err == nil {
			reply.LeaseExpiresAt = resp.GetLeaseExpiresAt()
		}
	case *queuedv1.LeaseRequest_Release:
		_, err = api.Release(ctx, m.Release)
	case *queuedv1.LeaseRequest_Progress:
		_, err = api.UpdateProgress(ctx, m.Progress)
	default:
		return nil, fmt.Errorf("no unary form for %T", m)
	}
	return reply, err
}

// Progress stores a progress report for the job (e.g. JSON with a
// percentage), visible in GetJob. Only jobs handed to a handler have a
// lease to report on.
func (j *Job) Progress(ctx context.Context, progress []byte) error {
	aj := j.lease
	if aj == nil || aj.w == nil {
		return fmt.Errorf("job %d: progress can only be reported by the handler working it", j.ID)
	}
	req := &queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Progress{Progress: &queuedv1.UpdateProgressRequest{JobId: j.ID, LeaseToken: aj.token, Progress: progress}}}
	_, err := aj.w.settle(ctx, aj, req)
	if err != nil {
		return fmt.Errorf("report progress of job %d: %w", j.ID, err)
	}
	return nil
}

// renewLoop extends the lease of every held job once less than a third of
// it is left, so a renewal has that last third to land.
func (w *Worker) renewLoop(ctx context.Context) {
	for {
		d := time.Duration(w.leaseDur.Load())
		if d <= 0 {
			d = 30 * time.Second // until the server has told us its default
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(d/6, 10*time.Millisecond)):
		}
		now := time.Now()
		var due []*activeJob
		w.mu.Lock()
		for _, aj := range w.jobs {
			if aj.lost == nil && !aj.extending && aj.expires.Sub(now) < d/3 {
				aj.extending = true
				due = append(due, aj)
			}
		}
		w.mu.Unlock()
		for _, aj := range due {
			go w.extend(ctx, aj, d)
		}
	}
}

func (w *Worker) extend(ctx context.Context, aj *activeJob, d time.Duration) {
	req := &queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Extend{Extend: &queuedv1.ExtendRequest{JobId: aj.job.ID, LeaseToken: aj.token, LeaseDuration: durationpb.New(d)}}}
	reply, err := w.settle(ctx, aj, req)
	w.mu.Lock()
	aj.extending = false
	switch {
	case err == nil:
		if t := timeOf(reply.GetLeaseExpiresAt()); !t.IsZero() {
			aj.expires = t
		}
	case IsLeaseLost(err) || IsNotFound(err) || errors.Is(err, ErrLeaseLost):
		w.log.Info("lease lost; stopping the job", "job_id", aj.job.ID, "err", err)
		w.loseLocked(aj, fmt.Errorf("%w: %v", ErrLeaseLost, err))
	default:
		w.log.Warn("extend lease", "job_id", aj.job.ID, "err", err)
	}
	w.mu.Unlock()
	if err != nil {
		w.nudgeWindow()
	}
}

package grpcserver

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/service"
)

// closeTimeout bounds how long handing back a closed stream's jobs may take.
const closeTimeout = 10 * time.Second

// Lease runs one worker stream. Two goroutines share it: this one reads the
// worker's messages; a sender pushes leases, cancellations, replies and
// pings. Settlements run concurrently, so one slow ack does not hold up the
// others. When the worker half-closes, the stream ends once every
// settlement it sent is committed; when it ends for any reason, the session
// hands back the jobs the worker still held.
func (s *Server) Lease(stream queuedv1.QueueService_LeaseServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open == nil {
		return s.toStatus(ctx, &service.ValidationError{Field: "open", Reason: "the first message on a Lease stream must be open"})
	}
	leaseDur, err := durationFromProto(open.GetLeaseDuration(), "open.lease_duration")
	if err != nil {
		return s.toStatus(ctx, err)
	}
	workerID := open.GetWorkerId()
	if workerID == "" {
		if p, ok := peer.FromContext(ctx); ok {
			workerID = p.Addr.String()
		}
	}
	sess, err := s.svc.OpenSession(service.SessionParams{
		Queues:        open.GetQueues(),
		Window:        int(open.GetWindow()),
		LeaseDuration: leaseDur,
		WorkerID:      workerID,
	})
	if err != nil {
		return s.toStatus(ctx, err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		if err := sess.Close(closeCtx); err != nil {
			s.log.ErrorContext(ctx, "hand back jobs of a closed stream", "session", sess.ID(), "err", err)
		}
	}()

	ls := &leaseStream{srv: s, stream: stream, sess: sess}
	pingEvery := s.svc.Config().PingInterval
	if err := ls.send(&queuedv1.LeaseResponse{Msg: &queuedv1.LeaseResponse_Opened{Opened: &queuedv1.LeaseOpened{
		SessionId:     sess.ID(),
		LeaseDuration: durationpb.New(sess.LeaseDuration()),
		PingInterval:  durationpb.New(pingEvery),
	}}}); err != nil {
		return err
	}

	sendCtx, stopSender := context.WithCancel(ctx)
	defer stopSender()
	senderDone := make(chan error, 1)
	go func() { senderDone <- ls.sendLoop(sendCtx, pingEvery) }()
	receiverDone := make(chan error, 1)
	go func() { receiverDone <- ls.receiveLoop(ctx) }()

	defer ls.closeSend()
	select {
	case err := <-receiverDone:
		// The worker half-closed (err == nil) or the stream broke. On a
		// half-close, answer every settlement it sent before ending.
		if err == nil {
			ls.settling.Wait()
		}
		stopSender()
		<-senderDone
		return err
	case err := <-senderDone:
		// Sending failed, or the server is draining and this worker holds
		// nothing more. The deferred Close waits for settlements in flight.
		if errors.Is(err, errDrained) {
			return status.Error(codes.Unavailable, "server is shutting down; reconnect to another replica")
		}
		return err
	}
}

// errDrained ends a stream once the server is draining and the worker holds
// no more jobs from it.
var errDrained = errors.New("drained")

type leaseStream struct {
	srv      *Server
	stream   queuedv1.QueueService_LeaseServer
	sess     *service.Session
	settling sync.WaitGroup

	sendMu     sync.Mutex
	sendClosed bool // the handler returned; Send is no longer allowed
}

func (ls *leaseStream) send(m *queuedv1.LeaseResponse) error {
	ls.sendMu.Lock()
	defer ls.sendMu.Unlock()
	if ls.sendClosed {
		return io.ErrClosedPipe
	}
	return ls.stream.Send(m)
}

func (ls *leaseStream) closeSend() {
	ls.sendMu.Lock()
	ls.sendClosed = true
	ls.sendMu.Unlock()
}

// sendLoop pushes the session's events, and pings when idle.
func (ls *leaseStream) sendLoop(ctx context.Context, pingEvery time.Duration) error {
	ping := time.NewTimer(pingEvery)
	defer ping.Stop()
	draining := ls.srv.svc.Draining()
	var recheck <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-draining:
			draining = nil
			recheck = time.After(0)
			continue
		case <-recheck:
			if ls.sess.Held() == 0 {
				return errDrained
			}
			// Check again shortly: settlements free the held jobs.
			recheck = time.After(20 * time.Millisecond)
			continue
		case <-ping.C:
			if err := ls.send(&queuedv1.LeaseResponse{Msg: &queuedv1.LeaseResponse_Ping{Ping: &queuedv1.Ping{SentAt: timestamppb.Now()}}}); err != nil {
				return err
			}
		case <-ls.sess.Ready():
			for _, ev := range ls.sess.Drain() {
				var m *queuedv1.LeaseResponse
				switch {
				case ev.Lease != nil:
					m = &queuedv1.LeaseResponse{Msg: &queuedv1.LeaseResponse_Job{Job: leaseToProto(ev.Lease)}}
				case ev.Cancelled != nil:
					m = &queuedv1.LeaseResponse{Msg: &queuedv1.LeaseResponse_Cancelled{Cancelled: &queuedv1.JobCancelled{
						JobId: ev.Cancelled.JobID, Reason: ev.Cancelled.Reason, Kind: cancelKind(ev.Cancelled),
					}}}
				default:
					continue
				}
				if err := ls.send(m); err != nil {
					return err
				}
			}
		}
		if !ping.Stop() {
			select {
			case <-ping.C:
			default:
			}
		}
		ping.Reset(pingEvery)
	}
}

// receiveLoop reads worker messages until the worker half-closes (nil) or
// the stream fails.
func (ls *leaseStream) receiveLoop(ctx context.Context) error {
	for {
		req, err := ls.stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch m := req.Msg.(type) {
		case *queuedv1.LeaseRequest_SetWindow:
			if err := ls.sess.SetWindow(int(m.SetWindow.GetWindow())); err != nil {
				return ls.srv.toStatus(ctx, err)
			}
		case *queuedv1.LeaseRequest_Open:
			return ls.srv.toStatus(ctx, &service.ValidationError{Field: "open", Reason: "the stream is already open"})
		case nil:
			return ls.srv.toStatus(ctx, &service.ValidationError{Field: "msg", Reason: "empty message"})
		default:
			ls.settling.Add(1)
			go func() {
				defer ls.settling.Done()
				ls.settle(ctx, req)
			}()
		}
	}
}

// settle runs one settlement and answers it. Replies go out when the worker
// asked for one (ref != 0) or the settlement failed, so a worker always
// learns of a lost lease.
func (ls *leaseStream) settle(ctx context.Context, req *queuedv1.LeaseRequest) {
	// Settlements must land even if the stream breaks meanwhile: the worker
	// did the work.
	ctx = context.WithoutCancel(ctx)
	reply := &queuedv1.Reply{Ref: req.GetRef()}
	var err error
	switch m := req.Msg.(type) {
	case *queuedv1.LeaseRequest_Ack:
		reply.JobId = m.Ack.GetJobId()
		_, err = ls.srv.ack(ctx, ls.sess, m.Ack, "ack.then")
		reply.State = queuedv1.JobState_JOB_STATE_COMPLETED
	case *queuedv1.LeaseRequest_Nack:
		reply.JobId = m.Nack.GetJobId()
		var p service.NackParams
		if p, err = nackParams(m.Nack, "nack."); err == nil {
			var job service.Job
			job, err = ls.sess.Nack(ctx, p)
			reply.State = stateToProto[job.State]
		}
	case *queuedv1.LeaseRequest_Extend:
		reply.JobId = m.Extend.GetJobId()
		var d time.Duration
		if d, err = durationFromProto(m.Extend.GetLeaseDuration(), "extend.lease_duration"); err == nil {
			var exp time.Time
			exp, err = ls.sess.Extend(ctx, leaseRef(m.Extend.GetJobId(), m.Extend.GetLeaseToken()), d)
			reply.LeaseExpiresAt = timestamp(exp)
		}
	case *queuedv1.LeaseRequest_Release:
		reply.JobId = m.Release.GetJobId()
		err = ls.sess.Release(ctx, leaseRef(m.Release.GetJobId(), m.Release.GetLeaseToken()))
	case *queuedv1.LeaseRequest_Progress:
		reply.JobId = m.Progress.GetJobId()
		err = ls.sess.UpdateProgress(ctx, leaseRef(m.Progress.GetJobId(), m.Progress.GetLeaseToken()), m.Progress.GetProgress())
	}
	if err != nil {
		st, _ := status.FromError(ls.srv.toStatus(ctx, err))
		reply.Code, reply.Message = int32(st.Code()), st.Message()
		reply.State = queuedv1.JobState_JOB_STATE_UNSPECIFIED
	} else if req.GetRef() == 0 {
		return
	}
	if reply.Code == int32(codes.OK) || reply.JobId != 0 {
		_ = ls.send(&queuedv1.LeaseResponse{Msg: &queuedv1.LeaseResponse_Reply{Reply: reply}})
	}
}

func cancelKind(c *service.Cancellation) queuedv1.JobCancelled_Kind {
	if c.LeaseExpired {
		return queuedv1.JobCancelled_KIND_LEASE_EXPIRED
	}
	return queuedv1.JobCancelled_KIND_CANCELLED
}

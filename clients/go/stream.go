package queued

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
)

// errConnLost means the stream ended before the server answered.
var errConnLost = errors.New("lease stream lost")

// closeWait bounds how long closing a stream waits for the server to
// answer the settlements sent before the half-close.
const closeWait = 10 * time.Second

// leaseConn is one Lease stream.
type leaseConn struct {
	stream queuedv1.QueueService_LeaseClient
	cancel context.CancelFunc

	sendMu sync.Mutex // gRPC allows one sender at a time

	mu      sync.Mutex
	pending map[uint64]chan *queuedv1.Reply
	done    chan struct{} // closed when the stream has ended
	err     error         // why it ended; nil for a clean end after CloseSend
	window  chan struct{} // wakes the window sender
}

func (c *leaseConn) send(m *queuedv1.LeaseRequest) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return c.stream.Send(m)
}

func (c *leaseConn) nudge() {
	select {
	case c.window <- struct{}{}:
	default:
	}
}

// call sends a settlement with a fresh ref and waits for its reply. It
// fails with errConnLost if the stream ends first; the settlement may or
// may not have been applied then.
func (c *leaseConn) call(ctx context.Context, ref uint64, m *queuedv1.LeaseRequest) (*queuedv1.Reply, error) {
	ch := make(chan *queuedv1.Reply, 1)
	c.mu.Lock()
	select {
	case <-c.done:
		c.mu.Unlock()
		return nil, errConnLost
	default:
	}
	c.pending[ref] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, ref)
		c.mu.Unlock()
	}()
	m.Ref = ref
	if err := c.send(m); err != nil {
		return nil, errConnLost
	}
	select {
	case r := <-ch:
		return r, nil
	case <-c.done:
		// A reply may have raced with the end of the stream.
		select {
		case r := <-ch:
			return r, nil
		default:
		}
		return nil, errConnLost
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *leaseConn) resolve(r *queuedv1.Reply) {
	c.mu.Lock()
	ch := c.pending[r.GetRef()]
	c.mu.Unlock()
	if ch != nil {
		ch <- r
	}
}

func (c *leaseConn) end(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
	default:
		c.err = err
		close(c.done)
	}
}

// connLoop keeps a stream open until ctx ends, reconnecting with backoff.
// When ctx ends it half-closes the stream and waits for the server to end
// it, which the server does once it has answered every settlement sent
// before: then every ack this worker sent is committed.
func (w *Worker) connLoop(ctx context.Context) {
	delay := w.cfg.ReconnectMin
	for {
		conn, err := w.open(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.log.Warn("open lease stream", "err", err, "retry_in", delay)
			select {
			case <-ctx.Done():
				return
			case <-time.After(jitter(delay)):
			}
			delay = min(delay*2, w.cfg.ReconnectMax)
			continue
		}
		delay = w.cfg.ReconnectMin
		w.setConn(conn)
		select {
		case <-conn.done:
			w.log.Warn("lease stream ended; reconnecting", "err", conn.err)
			w.connLost(conn)
			select {
			case <-ctx.Done():
				return
			case <-time.After(jitter(delay)):
			}
		case <-ctx.Done():
			w.closeConn(conn)
			return
		}
	}
}

func jitter(d time.Duration) time.Duration {
	return d - time.Duration(rand.Float64()*0.2*float64(d))
}

// open starts a stream and waits for the server's LeaseOpened. It opens
// with window 0; the window sender then asks for what is free.
func (w *Worker) open(ctx context.Context) (*leaseConn, error) {
	// The stream outlives ctx: closing it is a half-close and a wait, not
	// a cancellation, so that settlements in flight land.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stopWatch := context.AfterFunc(ctx, cancel)
	defer stopWatch()
	stream, err := w.client.api.Lease(sctx)
	if err != nil {
		cancel()
		return nil, err
	}
	open := &queuedv1.LeaseOpen{Queues: w.cfg.Queues, WorkerId: w.cfg.WorkerID}
	if w.cfg.LeaseDuration > 0 {
		open.LeaseDuration = durationpb.New(w.cfg.LeaseDuration)
	}
	if err := stream.Send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Open{Open: open}}); err != nil {
		cancel()
		_, rerr := stream.Recv() // the real error, e.g. UNAVAILABLE
		return nil, fmt.Errorf("send open: %w", errors.Join(err, rerr))
	}
	first, err := stream.Recv()
	if err != nil {
		cancel()
		return nil, err
	}
	opened := first.GetOpened()
	if opened == nil {
		cancel()
		return nil, fmt.Errorf("first message on the lease stream is %T, want opened", first.GetMsg())
	}
	if !stopWatch() {
		cancel()
		return nil, ctx.Err()
	}
	if d := opened.GetLeaseDuration().AsDuration(); d > 0 {
		w.leaseDur.Store(int64(d))
	}
	c := &leaseConn{
		stream:  stream,
		cancel:  cancel,
		pending: map[uint64]chan *queuedv1.Reply{},
		done:    make(chan struct{}),
		window:  make(chan struct{}, 1),
	}
	go w.recvLoop(c)
	w.log.Info("lease stream open", "session", opened.GetSessionId(), "lease_duration", opened.GetLeaseDuration().AsDuration())
	return c, nil
}

func (w *Worker) recvLoop(c *leaseConn) {
	for {
		m, err := c.stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			c.end(err)
			return
		}
		switch msg := m.GetMsg().(type) {
		case *queuedv1.LeaseResponse_Job:
			w.received(c, msg.Job)
		case *queuedv1.LeaseResponse_Reply:
			c.resolve(msg.Reply)
		case *queuedv1.LeaseResponse_Cancelled:
			w.cancelled(c, msg.Cancelled)
		}
	}
}

// windowLoop keeps the server's window for c equal to the free handler
// slots, sending only the latest value when several changes pile up.
func (w *Worker) windowLoop(c *leaseConn) {
	last := -1
	for {
		w.mu.Lock()
		n := -1
		if w.conn == c {
			n = w.windowLocked()
		}
		w.mu.Unlock()
		if n >= 0 && n != last {
			if err := c.send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_SetWindow{SetWindow: &queuedv1.SetWindow{Window: int32(n)}}}); err != nil {
				return // the stream is ending; recvLoop notices
			}
			last = n
		}
		select {
		case <-c.done:
			return
		case <-c.window:
		}
	}
}

func (w *Worker) setConn(c *leaseConn) {
	w.mu.Lock()
	w.conn = c
	w.refreshAllLocked()
	close(w.connChanged)
	w.connChanged = make(chan struct{})
	w.mu.Unlock()
	go w.windowLoop(c)
	c.nudge()
}

// connLost forgets a stream that ended. Jobs it leased stay with their
// handlers: their leases may still be good (a crashed server does not hand
// them back), and settling checks that. Jobs not yet started are handed
// back, in case the server still counts them.
func (w *Worker) connLost(c *leaseConn) {
	w.mu.Lock()
	if w.conn == c {
		w.conn = nil
		w.refreshAllLocked()
		close(w.connChanged)
		w.connChanged = make(chan struct{})
	}
	var unstarted []*activeJob
	for _, aj := range w.jobs {
		if aj.conn == c {
			aj.owned = false
			w.refreshLocked(aj)
			if !aj.started && aj.lost == nil {
				unstarted = append(unstarted, aj)
			}
		}
	}
	for _, aj := range unstarted {
		if i := slices.Index(w.waiting, aj); i >= 0 {
			w.waiting = slices.Delete(w.waiting, i, i+1)
		}
	}
	w.mu.Unlock()
	c.cancel()
	for _, aj := range unstarted {
		go w.release(aj)
	}
}

// closeConn half-closes c and waits for the server to end it.
func (w *Worker) closeConn(c *leaseConn) {
	c.sendMu.Lock()
	err := c.stream.CloseSend()
	c.sendMu.Unlock()
	if err == nil {
		select {
		case <-c.done:
			if c.err != nil {
				w.log.Warn("lease stream ended with an error after close", "err", c.err)
			}
		case <-time.After(closeWait):
			w.log.Warn("server did not end the lease stream after close; dropping it")
		}
	}
	w.connLost(c)
}

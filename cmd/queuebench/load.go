package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
)

// worker is a raw-gRPC streaming worker: one Lease stream with a window,
// no-op jobs, each acked on the stream at once without asking for a reply
// (the server still reports a refused ack). It measures the server, not an
// SDK's conveniences.
type worker struct {
	conn   *grpc.ClientConn
	stream queuedv1.QueueService_LeaseClient
	cancel context.CancelFunc
	sendMu sync.Mutex
	done   chan error
}

type workerParams struct {
	Queue         string
	Window        int
	LeaseDuration time.Duration // 0: server default
	// Rec records every job by its payload, unless OnJob is set.
	Rec *recorder
	// OnJob, when set, is told of every job received instead of Rec
	// (S7: scheduled jobs carry the schedule's payload, not a sequence
	// number).
	OnJob func(leasedJob)
	// AckErrors counts refused acks; nil: Rec's counter.
	AckErrors *atomic.Int64
}

// leasedJob is what a worker tells OnJob about a job it received.
type leasedJob struct {
	ID                int64
	Payload           []byte
	Metadata          map[string]string
	Children          int // a flow parent's children, as the claim read them
	ChildrenCompleted int // of which completed
}

// withDefaults points OnJob and AckErrors at Rec when they are not set.
func (p workerParams) withDefaults() workerParams {
	if p.OnJob == nil {
		rec := p.Rec
		p.OnJob = func(j leasedJob) { rec.start(j.Payload) }
	}
	if p.AckErrors == nil {
		p.AckErrors = &p.Rec.ackErrors
	}
	return p
}

// benchWorker is one worker process's connection: the raw-gRPC worker
// below or the Go SDK's Worker (sdkworker.go), chosen by -worker.
type benchWorker interface {
	// stop ends the worker once every ack it sent is committed.
	stop(timeout time.Duration) error
}

func startWorker(ctx context.Context, e *env, p workerParams) (*worker, error) {
	conn, client, err := e.dial()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &worker{conn: conn, cancel: cancel, done: make(chan error, 1)}
	fail := func(err error) (*worker, error) {
		cancel()
		conn.Close()
		return nil, err
	}
	if w.stream, err = client.Lease(ctx); err != nil {
		return fail(err)
	}
	open := &queuedv1.LeaseOpen{Queues: []string{p.Queue}, Window: int32(p.Window), WorkerId: "queuebench"}
	if p.LeaseDuration > 0 {
		open.LeaseDuration = durationpb.New(p.LeaseDuration)
	}
	if err := w.stream.Send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Open{Open: open}}); err != nil {
		return fail(err)
	}
	first, err := w.stream.Recv()
	if err != nil {
		return fail(fmt.Errorf("open lease stream: %w", err))
	}
	if first.GetOpened() == nil {
		return fail(fmt.Errorf("first message on the lease stream is %v, want opened", first))
	}
	go func() { w.done <- w.loop(p) }()
	return w, nil
}

func (w *worker) loop(p workerParams) error {
	for {
		m, err := w.stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch msg := m.Msg.(type) {
		case *queuedv1.LeaseResponse_Job:
			j := msg.Job.GetJob()
			lj := leasedJob{ID: j.GetId(), Payload: j.GetPayload(), Metadata: j.GetMetadata(), Children: len(msg.Job.GetChildren())}
			for _, c := range msg.Job.GetChildren() {
				if c.GetState() == queuedv1.JobState_JOB_STATE_COMPLETED {
					lj.ChildrenCompleted++
				}
			}
			p.OnJob(lj)
			ack := &queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Ack{Ack: &queuedv1.AckRequest{
				JobId: msg.Job.GetJob().GetId(), LeaseToken: msg.Job.GetLeaseToken(),
			}}}
			w.sendMu.Lock()
			err := w.stream.Send(ack)
			w.sendMu.Unlock()
			if err != nil {
				return err
			}
		case *queuedv1.LeaseResponse_Reply:
			if msg.Reply.GetCode() != 0 {
				p.AckErrors.Add(1)
			}
		}
	}
}

// stop half-closes the stream; the server ends it once every ack sent is
// committed, so after stop the database holds the outcome.
func (w *worker) stop(timeout time.Duration) error {
	defer w.conn.Close()
	defer w.cancel()
	w.sendMu.Lock()
	_ = w.stream.CloseSend()
	w.sendMu.Unlock()
	select {
	case err := <-w.done:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("the lease stream did not end within %v of closing it", timeout)
	}
}

// startWorkers starts n workers of the kind -worker chose, each on its own
// connection, and returns once every one has its lease stream open.
func startWorkers(ctx context.Context, e *env, n int, p workerParams) ([]benchWorker, error) {
	p = p.withDefaults()
	var ws []benchWorker
	for range n {
		var w benchWorker
		var err error
		if e.cfg.Worker == workerSDK {
			w, err = startSDKWorker(ctx, e, p)
		} else {
			w, err = startWorker(ctx, e, p)
		}
		if err != nil {
			stopWorkers(ws)
			return nil, err
		}
		ws = append(ws, w)
	}
	return ws, nil
}

func stopWorkers(ws []benchWorker) error {
	var errs []error
	for _, w := range ws {
		errs = append(errs, w.stop(30*time.Second))
	}
	return errors.Join(errs...)
}

// producer issues Enqueue calls over a few connections, as a fleet of
// producer services would.
type producer struct {
	conns   []*grpc.ClientConn
	clients []queuedv1.QueueServiceClient
	next    atomic.Uint64

	queue     string
	rec       *recorder
	seq       atomic.Uint64 // next sequence number
	limit     uint64        // no sequence numbers past this
	uniqueKey bool          // give each job its sequence number as unique key (safe retries)
	runAt     time.Time     // when set, jobs are due then and their stamp is runAt

	latMu sync.Mutex
	rpc   []int64 // Enqueue call latencies, ns
	errs  atomic.Int64
}

func newProducer(e *env, conns int, queue string, rec *recorder, limit int) (*producer, error) {
	p := &producer{queue: queue, rec: rec, limit: uint64(limit)}
	for range conns {
		conn, client, err := e.dial()
		if err != nil {
			p.close()
			return nil, err
		}
		p.conns = append(p.conns, conn)
		p.clients = append(p.clients, client)
	}
	return p, nil
}

func (p *producer) close() {
	for _, c := range p.conns {
		c.Close()
	}
}

// enqueueBatch takes n sequence numbers and enqueues them in one call. It
// reports false when the sequence space is used up.
func (p *producer) enqueueBatch(ctx context.Context, n int) (bool, error) {
	first := p.seq.Add(uint64(n)) - uint64(n)
	if first >= p.limit {
		return false, nil
	}
	n = int(min(uint64(n), p.limit-first))
	now := time.Now()
	stamp := now
	if !p.runAt.IsZero() {
		stamp = p.runAt
	}
	specs := make([]*queuedv1.JobSpec, n)
	for i := range specs {
		seq := first + uint64(i)
		specs[i] = &queuedv1.JobSpec{Queue: p.queue, Name: "noop", Payload: makePayload(seq, stamp)}
		if p.uniqueKey {
			specs[i].UniqueKey = strconv.FormatUint(seq, 10)
		}
		if !p.runAt.IsZero() {
			specs[i].RunAt = timestamppb.New(p.runAt)
		}
	}
	client := p.clients[p.next.Add(1)%uint64(len(p.clients))]
	for {
		_, err := client.Enqueue(ctx, &queuedv1.EnqueueRequest{Jobs: specs})
		if err == nil {
			break
		}
		p.errs.Add(1)
		if !p.uniqueKey || ctx.Err() != nil {
			return true, err
		}
		// With unique keys a retry cannot duplicate a job: try until the
		// server is back (S6's PostgreSQL restart).
		time.Sleep(50 * time.Millisecond)
	}
	d := time.Since(now)
	p.latMu.Lock()
	p.rpc = append(p.rpc, int64(d))
	p.latMu.Unlock()
	for i := range n {
		p.rec.markEnqueued(first + uint64(i))
	}
	return true, nil
}

// closedLoop runs callers that each enqueue batches of size batch back to
// back until the sequence space is used up or until the deadline.
func (p *producer) closedLoop(ctx context.Context, callers, batch int, deadline time.Time) error {
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range callers {
		wg.Go(func() {
			for ctx.Err() == nil && (deadline.IsZero() || time.Now().Before(deadline)) {
				more, err := p.enqueueBatch(ctx, batch)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					if ctx.Err() == nil {
						time.Sleep(10 * time.Millisecond)
					}
				}
				if !more {
					return
				}
			}
		})
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return fmt.Errorf("%d enqueue calls failed, the first: %w", p.errs.Load(), err)
	}
	return nil
}

// openLoop enqueues single jobs at a fixed rate for d, whatever the
// latency of earlier calls (up to senders calls in flight). It returns the
// rate it achieved.
func (p *producer) openLoop(ctx context.Context, rate float64, d time.Duration, senders int) (float64, error) {
	achieved, err := openLoop(ctx, rate, d, senders, func() error {
		_, err := p.enqueueBatch(ctx, 1)
		return err
	})
	if err != nil {
		return achieved, fmt.Errorf("%d enqueue calls failed, the first: %w", p.errs.Load(), err)
	}
	return achieved, nil
}

// openLoop makes call rate times a second for d, whatever the latency of
// earlier calls (up to senders calls in flight), and returns the rate it
// achieved and the first error of a call.
func openLoop(ctx context.Context, rate float64, d time.Duration, senders int, call func() error) (float64, error) {
	tokens := make(chan struct{}, senders*4)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range senders {
		wg.Go(func() {
			for range tokens {
				if err := call(); err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	start := time.Now()
	issued := 0
	tick := time.NewTicker(time.Millisecond)
	for now := start; now.Sub(start) < d && ctx.Err() == nil; now = <-tick.C {
		due := int(rate * now.Sub(start).Seconds())
		for ; issued < due; issued++ {
			tokens <- struct{}{} // blocks when every sender is busy: the producer falls behind
		}
	}
	tick.Stop()
	close(tokens)
	wg.Wait()
	achieved := float64(issued) / time.Since(start).Seconds()
	if err, ok := firstErr.Load().(error); ok {
		return achieved, err
	}
	return achieved, nil
}

func (p *producer) rpcLatencies() []int64 {
	p.latMu.Lock()
	defer p.latMu.Unlock()
	return p.rpc
}

// waitDelivered waits until every job enqueued with a sequence number below
// n was received, or the timeout.
func waitDelivered(ctx context.Context, rec *recorder, n int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		// Cheap test first; the exact count only when it may be done.
		if rec.started.Load() >= rec.enqCount.Load() && rec.pending(n) == 0 {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

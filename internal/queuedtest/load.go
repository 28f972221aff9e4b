package queuedtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
)

// This file holds load generators for tests that break things under load
// (a database restart, a replica going away): a producer and a worker that
// ride through errors the way a well-behaved client does, on raw gRPC, and
// keep the books a test needs to prove that nothing was lost.

// Producer enqueues jobs one at a time and retries each until the server
// says OK. Every job carries a unique key, so a retry of a call whose
// outcome was lost (committed, but the answer never arrived) names the same
// job instead of inserting another.
type Producer struct {
	mu      sync.Mutex
	ok      []int64 // ids of jobs whose Enqueue returned OK
	retries int
	failed  map[codes.Code]int // failed calls by code
}

// ProducerOptions configure RunProducer.
type ProducerOptions struct {
	Queue string
	Name  string // job name; also prefixes unique keys, so make it unique per producer
	Count int    // jobs to enqueue; 0 means until ctx ends
	Pause time.Duration
}

// RunProducer enqueues in the background until Count jobs are in or ctx
// ends; the returned channel closes when it stops.
func RunProducer(ctx context.Context, client queuedv1.QueueServiceClient, o ProducerOptions) (*Producer, <-chan struct{}) {
	p := &Producer{failed: make(map[codes.Code]int)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; (o.Count == 0 || i < o.Count) && ctx.Err() == nil; i++ {
			spec := &queuedv1.JobSpec{Queue: o.Queue, Name: o.Name, Payload: []byte(fmt.Sprint(i)), UniqueKey: fmt.Sprintf("%s-%d", o.Name, i)}
			for ctx.Err() == nil {
				callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
				resp, err := client.Enqueue(callCtx, &queuedv1.EnqueueRequest{Jobs: []*queuedv1.JobSpec{spec}})
				cancel()
				if err == nil {
					p.mu.Lock()
					p.ok = append(p.ok, resp.GetJobs()[0].GetId())
					p.mu.Unlock()
					break
				}
				if ctx.Err() != nil {
					break // stopped, not failed
				}
				p.mu.Lock()
				p.retries++
				p.failed[status.Code(err)]++
				p.mu.Unlock()
				sleep(ctx, 50*time.Millisecond)
			}
			if o.Pause > 0 {
				sleep(ctx, o.Pause)
			}
		}
	}()
	return p, done
}

// Enqueued returns the ids of the jobs whose Enqueue returned OK.
func (p *Producer) Enqueued() []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int64(nil), p.ok...)
}

// Retries is the number of Enqueue calls that failed and were retried.
func (p *Producer) Retries() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.retries
}

// Failures counts the failed Enqueue calls by gRPC code.
func (p *Producer) Failures() map[codes.Code]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.failed)
}

// Worker holds a Lease stream, reopening it whenever it breaks, and acks
// every job on the stream. An ack that fails for a reason other than a lost
// lease is retried as a unary Ack, as an SDK would.
type Worker struct {
	*Ledger
}

// Ledger keeps the books of one or many workers: deliveries, confirmed
// acks, and deliveries that must never happen. Workers that share a ledger
// catch a job redelivered to one after another's ack was confirmed.
type Ledger struct {
	mu         sync.Mutex
	deliveries map[int64]int  // times each job was delivered
	acked      map[int64]bool // jobs whose ack the server confirmed
	violations []string       // deliveries of jobs already confirmed acked
	reconnects int
	ackFailed  map[codes.Code]int // failed acks by code
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{deliveries: make(map[int64]int), acked: make(map[int64]bool), ackFailed: make(map[codes.Code]int)}
}

// WorkerOptions configure RunWorker.
type WorkerOptions struct {
	Queues        []string
	Window        int32
	LeaseDuration time.Duration
	ID            string
	// Work is called with each job before it is acked; nil does nothing.
	Work func(*queuedv1.LeasedJob)
	// Ledger records what the worker saw; nil gives it its own.
	Ledger *Ledger
}

// RunWorker works in the background until ctx ends; the returned channel
// closes when it stopped.
func RunWorker(ctx context.Context, client queuedv1.QueueServiceClient, o WorkerOptions) (*Worker, <-chan struct{}) {
	w := &Worker{Ledger: o.Ledger}
	if w.Ledger == nil {
		w.Ledger = NewLedger()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var acks sync.WaitGroup
		defer acks.Wait()
		for first := true; ctx.Err() == nil; first = false {
			if !first {
				w.mu.Lock()
				w.reconnects++
				w.mu.Unlock()
				sleep(ctx, 100*time.Millisecond)
			}
			_ = w.session(ctx, client, o, &acks)
		}
	}()
	return w, done
}

// session runs one Lease stream until it breaks.
func (w *Worker) session(ctx context.Context, client queuedv1.QueueServiceClient, o WorkerOptions, acks *sync.WaitGroup) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Lease(ctx)
	if err != nil {
		return err
	}
	open := &queuedv1.LeaseOpen{Queues: o.Queues, Window: o.Window, WorkerId: o.ID}
	if o.LeaseDuration > 0 {
		open.LeaseDuration = durationpb.New(o.LeaseDuration)
	}
	var sendMu sync.Mutex
	send := func(m *queuedv1.LeaseRequest) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	if err := send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Open{Open: open}}); err != nil {
		return err
	}
	tokens := make(map[int64]string) // job id -> lease token of the ack in flight
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case m.GetJob() != nil:
			j := m.GetJob()
			id := j.GetJob().GetId()
			w.mu.Lock()
			w.deliveries[id]++
			if w.acked[id] {
				w.violations = append(w.violations, fmt.Sprintf("job %d delivered again after its ack was confirmed", id))
			}
			w.mu.Unlock()
			if o.Work != nil {
				o.Work(j)
			}
			tokens[id] = j.GetLeaseToken()
			ack := &queuedv1.AckRequest{JobId: id, LeaseToken: j.GetLeaseToken()}
			if err := send(&queuedv1.LeaseRequest{Ref: uint64(id), Msg: &queuedv1.LeaseRequest_Ack{Ack: ack}}); err != nil {
				return err
			}
		case m.GetReply() != nil:
			r := m.GetReply()
			id := r.GetJobId()
			token := tokens[id]
			delete(tokens, id)
			w.ackFailure(codes.Code(r.GetCode()))
			switch codes.Code(r.GetCode()) {
			case codes.OK:
				w.confirm(id)
			case codes.FailedPrecondition, codes.NotFound:
				// The lease is gone (expired or handed back while the
				// database was away): the job runs again elsewhere.
			default:
				acks.Add(1)
				go func() {
					defer acks.Done()
					w.retryAck(context.WithoutCancel(ctx), client, id, token)
				}()
			}
		}
	}
}

// retryAck retries a failed ack as unary calls until it lands or the lease
// turns out to be gone, for up to a minute.
func (w *Worker) retryAck(ctx context.Context, client queuedv1.QueueServiceClient, id int64, token string) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for ctx.Err() == nil {
		callCtx, cancelCall := context.WithTimeout(ctx, 5*time.Second)
		_, err := client.Ack(callCtx, &queuedv1.AckRequest{JobId: id, LeaseToken: token})
		cancelCall()
		w.ackFailure(status.Code(err))
		switch status.Code(err) {
		case codes.OK:
			w.confirm(id)
			return
		case codes.FailedPrecondition, codes.NotFound:
			return
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

func (w *Ledger) ackFailure(c codes.Code) {
	if c == codes.OK {
		return
	}
	w.mu.Lock()
	w.ackFailed[c]++
	w.mu.Unlock()
}

// AckFailures counts the acks that failed, by gRPC code.
func (w *Ledger) AckFailures() map[codes.Code]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.ackFailed)
}

func (w *Ledger) confirm(id int64) {
	w.mu.Lock()
	w.acked[id] = true
	w.mu.Unlock()
}

// Acked reports whether the server confirmed an ack of job id.
func (w *Ledger) Acked(id int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked[id]
}

// AckedCount is the number of jobs whose ack was confirmed.
func (w *Ledger) AckedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// Deliveries is the total number of jobs delivered, redeliveries included.
func (w *Ledger) Deliveries() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, c := range w.deliveries {
		n += c
	}
	return n
}

// Violations lists deliveries that must never happen: a job delivered
// again after the server confirmed its ack.
func (w *Ledger) Violations() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.violations...)
}

// Reconnects is how many times the stream was reopened.
func (w *Ledger) Reconnects() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reconnects
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

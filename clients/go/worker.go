package queued

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
)

// Defaults for WorkerConfig.
const (
	ConcurrencyDefault     = 10
	ShutdownTimeoutDefault = 30 * time.Second
	ReconnectMinDefault    = 100 * time.Millisecond
	ReconnectMaxDefault    = 5 * time.Second
)

// WorkerConfig configures a Worker. Only Queues is required.
type WorkerConfig struct {
	// Queues to take jobs from.
	Queues []string
	// Concurrency is the most handlers that run at once (default 10). The
	// worker never runs more, and asks the server for no more jobs than it
	// has free handler slots.
	Concurrency int
	// LeaseDuration asks for this lease length; 0 takes the server's. The
	// worker renews leases of the jobs it holds every third of it, so a
	// handler may run for as long as it needs while the worker is alive.
	LeaseDuration time.Duration
	// ShutdownTimeout is how long Run lets running handlers finish after
	// its context ends (default 30s). Then their contexts are cancelled
	// with ErrShutdownTimeout.
	ShutdownTimeout time.Duration
	// WorkerID is shown as the job's leased_by; default host-pid.
	WorkerID string
	// ReconnectMin and ReconnectMax bound the wait between attempts to
	// reopen the lease stream (defaults 100ms and 5s, doubling, jittered).
	ReconnectMin, ReconnectMax time.Duration
	// Logger receives the worker's logs; nil discards them.
	Logger *slog.Logger
}

func (c WorkerConfig) withDefaults() WorkerConfig {
	if c.Concurrency <= 0 {
		c.Concurrency = ConcurrencyDefault
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = ShutdownTimeoutDefault
	}
	if c.ReconnectMin <= 0 {
		c.ReconnectMin = ReconnectMinDefault
	}
	if c.ReconnectMax < c.ReconnectMin {
		c.ReconnectMax = max(ReconnectMaxDefault, c.ReconnectMin)
	}
	if c.WorkerID == "" {
		host, _ := os.Hostname()
		c.WorkerID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// HandlerFunc works one job. A nil error acks the job and stores result;
// an error fails the attempt (retried with backoff unless wrapped with
// Permanent); a panic counts as an error. ctx ends when the job is
// cancelled, its lease is lost, or the worker's shutdown timeout passes;
// context.Cause(ctx) says which.
type HandlerFunc func(ctx context.Context, job *Job) (result []byte, err error)

// Worker runs handlers for the jobs of some queues. It holds one lease
// stream to the server, renews the leases of the jobs it holds, and
// reconnects when the stream breaks.
type Worker struct {
	client   *Client
	cfg      WorkerConfig
	log      *slog.Logger
	handlers map[string]HandlerFunc
	fallback HandlerFunc
	refs     atomic.Uint64
	leaseDur atomic.Int64 // lease length the server grants, in ns

	// handlerCtx parents every handler context; it is cancelled when the
	// shutdown timeout passes. settleCtx ends retries of settlements at
	// the very end of Run.
	handlerCtx    context.Context
	cancelHandler context.CancelCauseFunc
	settleCtx     context.Context
	cancelSettle  context.CancelFunc

	mu          sync.Mutex
	started     bool
	stopping    bool
	conn        *leaseConn // current stream; nil while reconnecting
	connChanged chan struct{}
	jobs        map[int64]*activeJob // leased and not yet settled
	orphans     int                  // jobs in jobs that are orphaned (see activeJob.orphan)
	busy        int                  // handler slots in use
	waiting     []*activeJob         // leased, waiting for a slot
	changed     chan struct{}        // signalled when a job leaves jobs
	lastArrival time.Time            // when the last job was leased to us
	idle        []*runner            // runners waiting for a job
	runnersDone bool                 // Run has ended: runners exit when idle
}

// activeJob is a job the worker holds a lease on.
type activeJob struct {
	w     *Worker
	job   *Job
	token string
	// conn is the stream that leased the job. While owned, the server
	// counts the job against that stream's window.
	conn    *leaseConn
	owned   bool
	started bool
	held    bool // in w.jobs
	// orphan caches whether the job takes a handler slot the current
	// stream's server session does not count; w.orphans counts them, so
	// that the window is known without walking every held job.
	orphan    bool
	lost      error // cancelled or lease lost: the job must not be settled
	expires   time.Time
	extending bool
	cancel    context.CancelCauseFunc
}

// NewWorker creates a worker that uses client's connection. Register
// handlers with Handle, then call Run.
func NewWorker(client *Client, cfg WorkerConfig) *Worker {
	cfg = cfg.withDefaults()
	return &Worker{
		client:      client,
		cfg:         cfg,
		log:         cfg.Logger,
		handlers:    map[string]HandlerFunc{},
		jobs:        map[int64]*activeJob{},
		connChanged: make(chan struct{}),
		changed:     make(chan struct{}, 1),
	}
}

// Handle registers the handler for jobs named name. Call it before Run.
func (w *Worker) Handle(name string, h HandlerFunc) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.handlers[name] = h
}

// HandleAll registers a handler for jobs whose name has no handler of its
// own. Without one, such jobs fail at once with a clear error.
func (w *Worker) HandleAll(h HandlerFunc) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.fallback = h
}

// HandleJSON registers a handler that receives the payload decoded from
// JSON into T. A payload that does not decode fails the job permanently,
// since retrying cannot fix it.
func HandleJSON[T any](w *Worker, name string, h func(ctx context.Context, job *Job, args T) error) {
	w.Handle(name, func(ctx context.Context, job *Job) ([]byte, error) {
		var args T
		if err := job.DecodeJSON(&args); err != nil {
			return nil, Permanent(err)
		}
		return nil, h(ctx, job, args)
	})
}

// Run works jobs until ctx ends, then shuts down: it stops taking jobs,
// hands back the jobs it holds but has not started, lets running handlers
// finish within ShutdownTimeout, and closes the stream once the server has
// answered every settlement, so that all acks are committed when Run
// returns. It returns nil after a shutdown, or an error if it could not
// start.
func (w *Worker) Run(ctx context.Context) error {
	if len(w.cfg.Queues) == 0 {
		return errors.New("queued: WorkerConfig.Queues names no queue")
	}
	w.mu.Lock()
	if w.started {
		w.mu.Unlock()
		return errors.New("queued: Worker.Run called twice")
	}
	if len(w.handlers) == 0 && w.fallback == nil {
		w.mu.Unlock()
		return errors.New("queued: no handlers registered; call Handle before Run")
	}
	w.started = true
	w.handlerCtx, w.cancelHandler = context.WithCancelCause(context.WithoutCancel(ctx))
	w.settleCtx, w.cancelSettle = context.WithCancel(context.WithoutCancel(ctx))
	w.mu.Unlock()
	if w.cfg.LeaseDuration > 0 {
		w.leaseDur.Store(int64(w.cfg.LeaseDuration))
	}

	connCtx, stopConns := context.WithCancel(context.WithoutCancel(ctx))
	connDone := make(chan struct{})
	go func() {
		defer close(connDone)
		w.connLoop(connCtx)
	}()
	renewCtx, stopRenew := context.WithCancel(context.WithoutCancel(ctx))
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		w.renewLoop(renewCtx)
	}()

	<-ctx.Done()
	w.log.Info("worker shutting down", "running", w.running())
	w.beginShutdown()
	if !w.waitIdle(w.cfg.ShutdownTimeout) {
		w.log.Warn("shutdown timeout: cancelling running handlers", "running", w.running())
		w.cancelHandler(ErrShutdownTimeout)
		if !w.waitIdle(shutdownGrace) {
			w.log.Error("handlers ignored cancellation; their jobs go back to the queue when the stream closes", "running", w.running())
		}
	}
	w.waitQuiet()
	stopRenew()
	<-renewDone
	stopConns()
	<-connDone
	w.cancelSettle()
	w.stopRunners()
	return nil
}

// Quiet period before closing the stream at shutdown. A claim the server
// had under way when SetWindow(0) arrived still delivers its jobs; waiting
// until the stream has been quiet lets the worker hand those back on the
// stream (no attempt counted) instead of leaving them to the server's
// clean-up of a closed stream (which counts an attempt, as it cannot know
// the worker never started them).
const (
	quietPeriod  = 100 * time.Millisecond
	quietMaxWait = 2 * time.Second
)

func (w *Worker) waitQuiet() {
	deadline := time.Now().Add(quietMaxWait)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		quiet := len(w.jobs) == 0 && time.Since(w.lastArrival) >= quietPeriod
		w.mu.Unlock()
		if quiet {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// shutdownGrace is how long handlers get to return after their contexts
// were cancelled at the shutdown timeout.
const shutdownGrace = 5 * time.Second

func (w *Worker) running() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.busy
}

// beginShutdown closes the window and hands back jobs not yet started.
func (w *Worker) beginShutdown() {
	w.mu.Lock()
	w.stopping = true
	waiting := w.waiting
	w.waiting = nil
	w.mu.Unlock()
	w.nudgeWindow()
	for _, aj := range waiting {
		go w.release(aj)
	}
}

// waitIdle waits until the worker holds no job, or d passes.
func (w *Worker) waitIdle(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		w.mu.Lock()
		n := len(w.jobs)
		w.mu.Unlock()
		if n == 0 {
			return true
		}
		select {
		case <-w.changed:
		case <-timer.C:
			return false
		}
	}
}

// received takes a job the server leased on conn.
func (w *Worker) received(conn *leaseConn, lj *queuedv1.LeasedJob) {
	job := jobFromProto(lj.GetJob())
	job.Children = childrenFromProto(lj.GetChildren())
	aj := &activeJob{w: w, job: job, token: lj.GetLeaseToken(), conn: conn, owned: true, expires: timeOf(lj.GetLeaseExpiresAt())}
	job.lease = aj
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastArrival = time.Now()
	w.holdLocked(aj)
	switch {
	case w.stopping:
		go w.release(aj)
	case w.busy < w.cfg.Concurrency:
		w.startLocked(aj)
	default:
		// The server sent more than there are free slots: a slot it
		// freed (a cancellation) is still busy here. Hold the job, with
		// its lease renewed, until a handler returns.
		w.waiting = append(w.waiting, aj)
	}
}

func (w *Worker) startLocked(aj *activeJob) {
	aj.started = true
	w.refreshLocked(aj)
	w.busy++
	ctx, cancel := context.WithCancelCause(w.handlerCtx)
	aj.cancel = cancel
	h := w.handlers[aj.job.Name]
	if h == nil {
		h = w.fallback
	}
	w.dispatchLocked(runTask{ctx: ctx, aj: aj, h: h})
}

// work runs a handler and settles its job.
func (w *Worker) work(ctx context.Context, aj *activeJob, h HandlerFunc) {
	defer w.finish(aj)
	defer aj.cancel(nil)
	var result []byte
	var err error
	if h == nil {
		err = Permanent(fmt.Errorf("no handler for job name %q on this worker (it handles %s)", aj.job.Name, strings.Join(w.handlerNames(), ", ")))
	} else {
		result, err = callHandler(ctx, h, aj.job)
	}
	w.mu.Lock()
	lost := aj.lost
	w.mu.Unlock()
	if lost != nil {
		w.log.Debug("job stopped without settling", "job_id", aj.job.ID, "cause", lost)
		return
	}
	var req *queuedv1.LeaseRequest
	switch {
	case errors.Is(err, ErrRelease):
		req = &queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Release{Release: &queuedv1.ReleaseRequest{JobId: aj.job.ID, LeaseToken: aj.token}}}
	case err == nil:
		req = &queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Ack{Ack: &queuedv1.AckRequest{JobId: aj.job.ID, LeaseToken: aj.token, Result: result, Then: aj.job.thenProto()}}}
	default:
		w.log.Info("job failed", "job_id", aj.job.ID, "name", aj.job.Name, "attempt", aj.job.Attempt, "permanent", IsPermanent(err), "err", err)
		req = &queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Nack{Nack: &queuedv1.NackRequest{
			JobId: aj.job.ID, LeaseToken: aj.token, Error: err.Error(),
			NonRetryable: IsPermanent(err), RetryDelay: durationOrNil(retryDelay(err)),
		}}}
	}
	if _, serr := w.settle(w.settleCtx, aj, req); serr != nil {
		w.log.Warn("settle job", "job_id", aj.job.ID, "err", serr)
	}
}

// callHandler runs h, turning a panic into an error that carries the panic
// value and stack, so the attempt fails like any other error.
func callHandler(ctx context.Context, h HandlerFunc, job *Job) (result []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			stack := debug.Stack()
			if len(stack) > 8<<10 {
				stack = stack[:8<<10]
			}
			err = fmt.Errorf("panic: %v\n%s", r, stack)
		}
	}()
	return h(ctx, job)
}

func (w *Worker) handlerNames() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	names := make([]string, 0, len(w.handlers))
	for n := range w.handlers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// finish frees a job's slot and starts a waiting job in it.
func (w *Worker) finish(aj *activeJob) {
	w.mu.Lock()
	w.unholdLocked(aj)
	if aj.started {
		w.busy--
	}
	for len(w.waiting) > 0 && w.busy < w.cfg.Concurrency && !w.stopping {
		next := w.waiting[0]
		w.waiting = w.waiting[1:]
		w.startLocked(next)
	}
	w.mu.Unlock()
	select {
	case w.changed <- struct{}{}:
	default:
	}
	w.nudgeWindow()
}

// drop forgets a job that was never started (lost or released).
func (w *Worker) dropLocked(aj *activeJob) {
	w.unholdLocked(aj)
	if i := slices.Index(w.waiting, aj); i >= 0 {
		w.waiting = slices.Delete(w.waiting, i, i+1)
	}
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// release hands back a job that was never started; no attempt counts.
func (w *Worker) release(aj *activeJob) {
	req := &queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Release{Release: &queuedv1.ReleaseRequest{JobId: aj.job.ID, LeaseToken: aj.token}}}
	if _, err := w.settle(w.settleCtx, aj, req); err != nil {
		w.log.Debug("release job", "job_id", aj.job.ID, "err", err)
	}
	w.mu.Lock()
	w.dropLocked(aj)
	w.mu.Unlock()
}

// cancelled stops a job the server says is cancelled or whose lease it
// took back. The server no longer counts the job on conn.
func (w *Worker) cancelled(conn *leaseConn, msg *queuedv1.JobCancelled) {
	id := msg.GetJobId()
	cause := fmt.Errorf("%w: %s", ErrJobCancelled, msg.GetReason())
	if msg.GetKind() == queuedv1.JobCancelled_KIND_LEASE_EXPIRED {
		cause = fmt.Errorf("%w: %s", ErrLeaseLost, msg.GetReason())
	}
	w.mu.Lock()
	aj := w.jobs[id]
	if aj == nil || aj.conn != conn {
		w.mu.Unlock()
		return
	}
	w.loseLocked(aj, cause)
	w.mu.Unlock()
	w.nudgeWindow()
}

// loseLocked marks a job as no longer ours to settle.
func (w *Worker) loseLocked(aj *activeJob, cause error) {
	if aj.lost != nil {
		return
	}
	aj.lost = cause
	aj.owned = false
	w.refreshLocked(aj)
	if aj.started {
		aj.cancel(cause)
	} else {
		w.dropLocked(aj)
	}
}

// window is what the current stream may hold: every handler slot, less
// those taken by jobs the stream's server session does not count (jobs
// from an earlier stream, cancelled jobs whose handler has not returned).
func (w *Worker) windowLocked() int {
	if w.stopping {
		return 0
	}
	return max(0, w.cfg.Concurrency-w.orphans)
}

// holdLocked puts aj into jobs. A job leased again (after its earlier
// lease was lost) replaces the earlier activeJob, which is no longer held.
func (w *Worker) holdLocked(aj *activeJob) {
	if old := w.jobs[aj.job.ID]; old != nil {
		old.held = false
		w.refreshLocked(old)
	}
	w.jobs[aj.job.ID] = aj
	aj.held = true
	w.refreshLocked(aj)
}

// unholdLocked takes aj out of jobs, if it is still there.
func (w *Worker) unholdLocked(aj *activeJob) {
	if w.jobs[aj.job.ID] == aj {
		delete(w.jobs, aj.job.ID)
		aj.held = false
		w.refreshLocked(aj)
	}
}

// refreshLocked recomputes aj.orphan after a change to the job or to
// w.conn, keeping w.orphans equal to the number of orphans in jobs.
func (w *Worker) refreshLocked(aj *activeJob) {
	orphan := aj.held && aj.started && (!aj.owned || aj.conn != w.conn)
	if orphan == aj.orphan {
		return
	}
	aj.orphan = orphan
	if orphan {
		w.orphans++
	} else {
		w.orphans--
	}
}

// refreshAllLocked recomputes every job after w.conn changed (rare: a
// stream opened or ended).
func (w *Worker) refreshAllLocked() {
	for _, aj := range w.jobs {
		w.refreshLocked(aj)
	}
}

func (w *Worker) nudgeWindow() {
	w.mu.Lock()
	c := w.conn
	w.mu.Unlock()
	if c != nil {
		c.nudge()
	}
}

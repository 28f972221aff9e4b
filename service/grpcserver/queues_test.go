package grpcserver_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/internal/queuedtest"
	"github.com/queued-dev/queued/service"
)

func admin(s *queuedtest.Server) queuedv1.QueueAdminServiceClient {
	return queuedv1.NewQueueAdminServiceClient(s.Conn)
}

func pauseQueue(t *testing.T, s *queuedtest.Server, q string) *queuedv1.Queue {
	t.Helper()
	resp, err := admin(s).PauseQueue(context.Background(), &queuedv1.PauseQueueRequest{Queue: q})
	if err != nil {
		t.Fatalf("PauseQueue(%q) = %v", q, err)
	}
	return resp.GetQueue()
}

func resumeQueue(t *testing.T, s *queuedtest.Server, q string) *queuedv1.Queue {
	t.Helper()
	resp, err := admin(s).ResumeQueue(context.Background(), &queuedv1.ResumeQueueRequest{Queue: q})
	if err != nil {
		t.Fatalf("ResumeQueue(%q) = %v", q, err)
	}
	return resp.GetQueue()
}

func setRateLimit(t *testing.T, s *queuedtest.Server, q string, max int32, per time.Duration) *queuedv1.Queue {
	t.Helper()
	req := &queuedv1.SetRateLimitRequest{Queue: q, Max: max}
	if per > 0 {
		req.Per = durationpb.New(per)
	}
	resp, err := admin(s).SetRateLimit(context.Background(), req)
	if err != nil {
		t.Fatalf("SetRateLimit(%q, %d/%v) = %v", q, max, per, err)
	}
	return resp.GetQueue()
}

// waitSeenOn waits until replica s's own view of queue q satisfies ok: a
// change made through another replica takes a notification's round trip
// to be in force here (the documented window).
func waitSeenOn(t *testing.T, s *queuedtest.Server, q string, what string, ok func(service.QueueSettings) bool) {
	t.Helper()
	eventually(t, 10*time.Second, "replica sees "+what+" of "+q, func() bool {
		controls := s.Service().QueueControls()
		i := slices.IndexFunc(controls, func(c service.QueueSettings) bool { return c.Queue == q })
		return i >= 0 && ok(controls[i])
	})
}

func waitPausedOn(t *testing.T, s *queuedtest.Server, q string) {
	t.Helper()
	waitSeenOn(t, s, q, "the pause", func(c service.QueueSettings) bool { return c.Paused })
}

// receiveN collects n jobs from any of the workers.
func receiveN(t *testing.T, n int, timeout time.Duration, ws ...*worker) []*queuedv1.LeasedJob {
	t.Helper()
	var out []*queuedv1.LeasedJob
	deadline := time.After(timeout)
	merged := make(chan *queuedv1.LeasedJob)
	stop := make(chan struct{})
	defer close(stop)
	for _, w := range ws {
		go func() {
			for {
				select {
				case <-stop:
					return
				case j, ok := <-w.jobs:
					if !ok {
						return
					}
					select {
					case merged <- j:
					case <-stop:
						w.jobs <- j // hand it back for a later look
						return
					}
				}
			}
		}()
	}
	for len(out) < n {
		select {
		case j := <-merged:
			out = append(out, j)
		case <-deadline:
			t.Fatalf("received %d jobs within %v, want %d", len(out), timeout, n)
		}
	}
	return out
}

func TestPauseStopsDeliveryOnEveryReplicaAndResumeDeliversTheBacklog(t *testing.T) {
	t.Parallel()
	// The safety-net poll is an hour away: whatever moves here moved by
	// notification.
	slowPoll := queuedtest.WithService(func(c *service.Config) { c.PollInterval = time.Hour })
	a := queuedtest.Start(t, slowPoll)
	b := queuedtest.StartOn(t, a.DatabaseURL, slowPoll)
	wa := openWorker(t, a.Client, &queuedv1.LeaseOpen{Queues: []string{"work"}, Window: 50, WorkerId: "wa"})
	wb := openWorker(t, b.Client, &queuedv1.LeaseOpen{Queues: []string{"work"}, Window: 50, WorkerId: "wb"})

	if q := pauseQueue(t, a, "work"); !q.GetPaused() || q.GetName() != "work" {
		t.Fatalf("PauseQueue() = %v, want work paused", q)
	}
	waitPausedOn(t, b, "work")
	const n = 20
	for range n {
		enqueue(t, b, spec("work")) // enqueueing still works, through either replica
	}
	enqueue(t, a, spec("work"))
	wa.expectNone(time.Second)
	wb.expectNone(100 * time.Millisecond)
	if got := countRows(t, a, "queue = 'work' AND state = 'available'"); got != n+1 {
		t.Fatalf("available jobs while paused = %d, want %d", got, n+1)
	}

	// Workers take jobs the moment the resume lands, so the counts in the
	// reply may already show some running; none are finished or lost.
	if q := resumeQueue(t, b, "work"); q.GetPaused() || q.GetCounts().GetAvailable()+q.GetCounts().GetRunning() != n+1 {
		t.Fatalf("ResumeQueue() = %v, want work running with %d jobs available or running", q, n+1)
	}
	jobs := receiveN(t, n+1, 10*time.Second, wa, wb)
	seen := map[int64]bool{}
	for _, j := range jobs {
		if seen[j.GetJob().GetId()] {
			t.Fatalf("job %d delivered twice", j.GetJob().GetId())
		}
		seen[j.GetJob().GetId()] = true
	}
}

func TestRunningJobsFinishWhileTheirQueueIsPaused(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"work"}, Window: 5})
	enqueue(t, s, spec("work"), spec("work"))
	first, second := w.next(5*time.Second), w.next(5*time.Second)

	pauseQueue(t, s, "work")
	enqueue(t, s, spec("work"), spec("work"), spec("work"))
	w.ack(first, []byte("done"))
	if _, err := s.Client.Nack(context.Background(), &queuedv1.NackRequest{JobId: second.GetJob().GetId(), LeaseToken: second.GetLeaseToken(), Error: "boom", NonRetryable: true}); err != nil {
		t.Fatalf("Nack() while paused = %v", err)
	}
	eventually(t, 5*time.Second, "the running job to complete", func() bool {
		return getJob(t, s, first.GetJob().GetId()).GetState() == queuedv1.JobState_JOB_STATE_COMPLETED
	})
	if st := getJob(t, s, second.GetJob().GetId()).GetState(); st != queuedv1.JobState_JOB_STATE_FAILED {
		t.Fatalf("nacked job state = %v, want failed", st)
	}
	// The freed slots get nothing while the queue is paused.
	w.expectNone(time.Second)
	got, err := admin(s).GetQueue(context.Background(), &queuedv1.GetQueueRequest{Queue: "work"})
	if err != nil {
		t.Fatal(err)
	}
	if q := got.GetQueue(); !q.GetPaused() || q.GetCounts().GetAvailable() != 3 || q.GetCounts().GetRunning() != 0 {
		t.Fatalf("GetQueue() = %v, want paused with 3 available and none running", q)
	}
}

func TestPauseLeavesTheOtherQueuesOfAWorkerFlowing(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"a", "b"}, Window: 10})
	pauseQueue(t, s, "a")
	enqueue(t, s, spec("a"), spec("b"), spec("a"), spec("b"))
	for range 2 {
		if j := w.next(5 * time.Second); j.GetJob().GetQueue() != "b" {
			t.Fatalf("got a job of queue %q while a is paused", j.GetJob().GetQueue())
		}
	}
	w.expectNone(time.Second)
	resumeQueue(t, s, "a")
	for range 2 {
		if j := w.next(5 * time.Second); j.GetJob().GetQueue() != "a" {
			t.Fatalf("got a job of queue %q, want a", j.GetJob().GetQueue())
		}
	}
}

// A replica that starts while a queue is paused (a restart, a new pod)
// honours the pause from its first claim.
func TestAReplicaStartedDuringAPauseHonoursIt(t *testing.T) {
	t.Parallel()
	a := queuedtest.Start(t)
	pauseQueue(t, a, "work")
	a.Kill()
	b := queuedtest.StartOn(t, a.DatabaseURL)
	enqueue(t, b, spec("work"))
	w := openWorker(t, b.Client, &queuedv1.LeaseOpen{Queues: []string{"work"}, Window: 1})
	w.expectNone(time.Second)
	resumeQueue(t, b, "work")
	w.next(5 * time.Second)
}

// startTimes returns the started_at of every job of a queue, in order.
func startTimes(t *testing.T, s *queuedtest.Server, queue string) []time.Time {
	t.Helper()
	rows, err := s.Pool().Query(context.Background(), `SELECT started_at FROM queued_jobs WHERE queue = $1 AND started_at IS NOT NULL ORDER BY started_at`, queue)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []time.Time
	for rows.Next() {
		var ts time.Time
		if err := rows.Scan(&ts); err != nil {
			t.Fatal(err)
		}
		out = append(out, ts)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRateLimitHoldsAcrossReplicasAndSparesUnlimitedQueues(t *testing.T) {
	t.Parallel()
	a := queuedtest.Start(t)
	b := queuedtest.StartOn(t, a.DatabaseURL)
	const (
		max     = 20
		per     = 500 * time.Millisecond
		limited = 200
		free    = 200
		// slack: a claim stamps started_at with the time it read before
		// waiting for the bucket's row lock, so a job may carry a time a
		// little earlier than the token it took (docs/queues.md).
		slack = 4
	)
	setRateLimit(t, b, "limited", max, per)
	waitSeenOn(t, a, "limited", "the limit", func(c service.QueueSettings) bool { return c.Limit.Max == max })

	var specs []*queuedv1.JobSpec
	for range limited {
		specs = append(specs, spec("limited"))
	}
	for range free {
		specs = append(specs, spec("free"))
	}
	enqueue(t, a, specs...)

	// Four workers on two replicas: two serve only the limited queue, two
	// serve both (so the limited and unlimited claims split in one
	// dispatcher).
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i, open := range []*queuedv1.LeaseOpen{
		{Queues: []string{"limited"}, Window: 10, WorkerId: "w0"},
		{Queues: []string{"limited"}, Window: 10, WorkerId: "w1"},
		{Queues: []string{"free", "limited"}, Window: 10, WorkerId: "w2"},
		{Queues: []string{"free", "limited"}, Window: 10, WorkerId: "w3"},
	} {
		w := openWorker(t, []*queuedtest.Server{a, b}[i%2].Client, open)
		wg.Go(func() {
			for {
				select {
				case <-done:
					_ = w.closeAndWait()
					return
				case j, ok := <-w.jobs:
					if !ok {
						return
					}
					w.ack(j, nil)
				}
			}
		})
	}
	eventually(t, 60*time.Second, "every job completed", func() bool {
		return countRows(t, a, "state = 'completed'") == limited+free
	})
	close(done)
	wg.Wait()

	starts := startTimes(t, a, "limited")
	if len(starts) != limited {
		t.Fatalf("limited jobs started = %d, want %d", len(starts), limited)
	}
	// The token bucket's promise: in any interval [s_i, s_j] at most
	// max + max*(s_j-s_i)/per jobs start.
	rate := float64(max) / per.Seconds()
	for i := range starts {
		for j := i; j < len(starts); j++ {
			n := j - i + 1
			bound := float64(max) + rate*starts[j].Sub(starts[i]).Seconds() + slack
			if float64(n) > bound {
				t.Fatalf("%d limited jobs started within %v (from %v), want at most %.1f", n, starts[j].Sub(starts[i]), starts[i], bound)
			}
		}
	}
	// The unlimited queue was not held back by its neighbour: it drained
	// while the limited one was still trickling.
	freeStarts := startTimes(t, a, "free")
	if last, limitedLast := freeStarts[len(freeStarts)-1], starts[len(starts)-1]; !last.Before(limitedLast) {
		t.Fatalf("last unlimited job started at %v, not before the last limited one (%v)", last, limitedLast)
	}
	// Both replicas took part in the limited work.
	var onA, onB int
	if err := a.Pool().QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE leased_by IN ('w0', 'w2')), count(*) FILTER (WHERE leased_by IN ('w1', 'w3')) FROM queued_jobs WHERE queue = 'limited'`).Scan(&onA, &onB); err != nil {
		t.Fatal(err)
	}
	t.Logf("limited jobs started through replica a: %d, b: %d; span %v", onA, onB, starts[len(starts)-1].Sub(starts[0]))
}

func TestRateLimitChangesApplyWithoutRestart(t *testing.T) {
	t.Parallel()
	a := queuedtest.Start(t)
	b := queuedtest.StartOn(t, a.DatabaseURL) // changes are made on b, work flows on a
	w := openWorker(t, a.Client, &queuedv1.LeaseOpen{Queues: []string{"q"}, Window: 20})

	q := setRateLimit(t, b, "q", 1, time.Hour)
	if q.GetRateLimit().GetMax() != 1 || q.GetRateLimit().GetPer().AsDuration() != time.Hour {
		t.Fatalf("SetRateLimit() = %v", q)
	}
	waitSeenOn(t, a, "q", "the limit", func(c service.QueueSettings) bool { return c.Limit.Max == 1 })
	for range 5 {
		enqueue(t, a, spec("q"))
	}
	w.next(5 * time.Second) // the bucket's one token
	w.expectNone(time.Second)

	setRateLimit(t, b, "q", 100, time.Second) // raised: the rest flows
	for range 4 {
		w.next(10 * time.Second)
	}

	// Lowered: the bucket keeps at most one token. Replica a may not have
	// heard yet, but the bucket it claims under is the database's.
	setRateLimit(t, b, "q", 1, time.Hour)
	for range 3 {
		enqueue(t, a, spec("q"))
	}
	got := 0
	for quiet := time.After(1500 * time.Millisecond); got < 3; got++ {
		select {
		case <-w.jobs:
			continue
		case <-quiet:
		}
		break
	}
	if got > 1 {
		t.Fatalf("got %d jobs after lowering the limit to 1 per hour, want at most 1", got)
	}

	q = setRateLimit(t, b, "q", 0, 0) // cleared: everything flows
	if q.GetRateLimit() != nil {
		t.Fatalf("SetRateLimit(0) = %v, want no limit", q)
	}
	for range 3 - got {
		w.next(10 * time.Second)
	}
}

func TestQueueAdminRefusesBadInputNamingTheField(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	ctx := context.Background()
	long := string(make([]byte, service.MaxNameLength+1))
	tests := []struct {
		name  string
		call  func() error
		field string
	}{
		{"pause empty queue", func() error { _, err := admin(s).PauseQueue(ctx, &queuedv1.PauseQueueRequest{}); return err }, "queue"},
		{"resume empty queue", func() error { _, err := admin(s).ResumeQueue(ctx, &queuedv1.ResumeQueueRequest{}); return err }, "queue"},
		{"get empty queue", func() error { _, err := admin(s).GetQueue(ctx, &queuedv1.GetQueueRequest{}); return err }, "queue"},
		{"pause long queue", func() error {
			_, err := admin(s).PauseQueue(ctx, &queuedv1.PauseQueueRequest{Queue: long})
			return err
		}, "queue"},
		{"limit empty queue", func() error {
			_, err := admin(s).SetRateLimit(ctx, &queuedv1.SetRateLimitRequest{Max: 1, Per: dur(time.Second)})
			return err
		}, "queue"},
		{"negative max", func() error {
			_, err := admin(s).SetRateLimit(ctx, &queuedv1.SetRateLimitRequest{Queue: "q", Max: -1, Per: dur(time.Second)})
			return err
		}, "max"},
		{"huge max", func() error {
			_, err := admin(s).SetRateLimit(ctx, &queuedv1.SetRateLimitRequest{Queue: "q", Max: service.MaxRateLimit + 1, Per: dur(time.Second)})
			return err
		}, "max"},
		{"max without per", func() error {
			_, err := admin(s).SetRateLimit(ctx, &queuedv1.SetRateLimitRequest{Queue: "q", Max: 5})
			return err
		}, "per"},
		{"per below a millisecond", func() error {
			_, err := admin(s).SetRateLimit(ctx, &queuedv1.SetRateLimitRequest{Queue: "q", Max: 5, Per: dur(500 * time.Microsecond)})
			return err
		}, "per"},
		{"per not whole milliseconds", func() error {
			_, err := admin(s).SetRateLimit(ctx, &queuedv1.SetRateLimitRequest{Queue: "q", Max: 5, Per: dur(1500 * time.Microsecond)})
			return err
		}, "per"},
		{"per above a day", func() error {
			_, err := admin(s).SetRateLimit(ctx, &queuedv1.SetRateLimitRequest{Queue: "q", Max: 5, Per: dur(25 * time.Hour)})
			return err
		}, "per"},
		{"negative per", func() error {
			_, err := admin(s).SetRateLimit(ctx, &queuedv1.SetRateLimitRequest{Queue: "q", Max: 5, Per: dur(-time.Second)})
			return err
		}, "per"},
		{"invalid per", func() error {
			_, err := admin(s).SetRateLimit(ctx, &queuedv1.SetRateLimitRequest{Queue: "q", Max: 5, Per: &durationpb.Duration{Seconds: 1, Nanos: -1}})
			return err
		}, "per"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			wantCode(t, err, codes.InvalidArgument)
			if got := fieldOf(t, err); got != tt.field {
				t.Fatalf("field = %q, want %q (%v)", got, tt.field, err)
			}
		})
	}
	// Nothing was written.
	resp, err := admin(s).ListQueueSettings(ctx, &queuedv1.ListQueueSettingsRequest{})
	if err != nil || len(resp.GetQueues()) != 0 {
		t.Fatalf("ListQueueSettings() after refused calls = %v, %v; want none", resp, err)
	}
}

func TestGetQueueAndListQueueSettingsReportSettingsAndCounts(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	ctx := context.Background()
	enqueue(t, s, spec("x"), spec("x"), &queuedv1.JobSpec{Queue: "x", Name: "later", Delay: dur(time.Hour)})
	pauseQueue(t, s, "y")
	setRateLimit(t, s, "z", 7, 2*time.Second)

	resp, err := admin(s).ListQueueSettings(ctx, &queuedv1.ListQueueSettingsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	byName := map[string]*queuedv1.Queue{}
	for _, q := range resp.GetQueues() {
		names = append(names, q.GetName())
		byName[q.GetName()] = q
	}
	if !sort.StringsAreSorted(names) || fmt.Sprint(names) != "[x y z]" {
		t.Fatalf("ListQueueSettings() names = %v, want [x y z]", names)
	}
	if x := byName["x"]; x.GetPaused() || x.GetRateLimit() != nil || x.GetCounts().GetAvailable() != 2 || x.GetCounts().GetScheduled() != 1 || x.GetUpdatedAt() != nil {
		t.Fatalf("queue x = %v, want running, unlimited, 2 available, 1 scheduled, never configured", x)
	}
	if y := byName["y"]; !y.GetPaused() || y.GetUpdatedAt() == nil {
		t.Fatalf("queue y = %v, want paused", y)
	}
	if z := byName["z"]; z.GetPaused() || z.GetRateLimit().GetMax() != 7 || z.GetRateLimit().GetPer().AsDuration() != 2*time.Second {
		t.Fatalf("queue z = %v, want limited to 7 per 2s", z)
	}

	got, err := admin(s).GetQueue(ctx, &queuedv1.GetQueueRequest{Queue: "never-seen"})
	if err != nil {
		t.Fatal(err)
	}
	if q := got.GetQueue(); q.GetName() != "never-seen" || q.GetPaused() || q.GetRateLimit() != nil || q.GetCounts().GetAvailable() != 0 {
		t.Fatalf("GetQueue(never-seen) = %v, want a running, empty queue", q)
	}
}

// A pause made while a replica's notification connection is down (the
// NOTIFY is lost to it) still reaches that replica when it reconnects, well
// before the safety-net poll.
func TestPauseReachesAReplicaThatMissedTheNotification(t *testing.T) {
	t.Parallel()
	slowPoll := queuedtest.WithService(func(c *service.Config) { c.PollInterval = time.Hour })
	a := queuedtest.Start(t, slowPoll)
	b := queuedtest.StartOn(t, a.DatabaseURL, slowPoll)
	w := openWorker(t, b.Client, &queuedv1.LeaseOpen{Queues: []string{"work"}, Window: 5})
	ctx := context.Background()

	// Cut every listening connection of this database, then pause at once:
	// the listeners reconnect only after a backoff, so the NOTIFY goes to
	// nobody on b.
	const listeners = `FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'`
	eventually(t, 10*time.Second, "both replicas listening", func() bool {
		var n int
		return a.Pool().QueryRow(ctx, `SELECT count(*) `+listeners).Scan(&n) == nil && n == 2
	})
	if _, err := a.Pool().Exec(ctx, `SELECT pg_terminate_backend(pid) `+listeners); err != nil {
		t.Fatal(err)
	}
	pauseQueue(t, a, "work")
	waitPausedOn(t, b, "work")
	enqueue(t, a, spec("work"))
	w.expectNone(time.Second)
	resumeQueue(t, a, "work")
	w.next(10 * time.Second)
}

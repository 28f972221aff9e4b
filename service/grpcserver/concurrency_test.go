package grpcserver_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/internal/queuedtest"
)

// runWorkers runs n stream workers that ack every job they get, until done
// is closed, and returns how often each job id was delivered.
func runWorkers(t *testing.T, clients []queuedv1.QueueServiceClient, n int, queue string, window int32, done <-chan struct{}) (func() map[int64]int, *sync.WaitGroup) {
	t.Helper()
	var mu sync.Mutex
	seen := make(map[int64]int)
	var wg sync.WaitGroup
	for i := range n {
		w := openWorker(t, clients[i%len(clients)], &queuedv1.LeaseOpen{Queues: []string{queue}, Window: window, WorkerId: fmt.Sprintf("w%d", i)})
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
					mu.Lock()
					seen[j.GetJob().GetId()]++
					mu.Unlock()
					w.ack(j, nil)
				}
			}
		})
	}
	return func() map[int64]int {
		mu.Lock()
		defer mu.Unlock()
		out := make(map[int64]int, len(seen))
		for k, v := range seen {
			out[k] = v
		}
		return out
	}, &wg
}

func TestEightWorkersFiveThousandJobsEachCompletedExactlyOnce(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	const total = 5000
	done := make(chan struct{})
	snapshot, wg := runWorkers(t, []queuedv1.QueueServiceClient{s.Client}, 8, "bulk", 32, done)

	// Enqueue from 16 concurrent producers while the workers run, so that
	// coalesced inserts, claims and acks all race each other.
	var pwg sync.WaitGroup
	for p := range 16 {
		pwg.Go(func() {
			for i := p; i < total; i += 16 {
				if _, err := s.Client.Enqueue(context.Background(), &queuedv1.EnqueueRequest{Jobs: []*queuedv1.JobSpec{{Queue: "bulk", Name: "n", Payload: []byte(fmt.Sprint(i))}}}); err != nil {
					t.Errorf("Enqueue() = %v", err)
					return
				}
			}
		})
	}
	pwg.Wait()
	eventually(t, 60*time.Second, "all jobs completed", func() bool {
		return countRows(t, s, "state = 'completed'") == total
	})
	close(done)
	wg.Wait()
	seen := snapshot()
	if len(seen) != total {
		t.Fatalf("distinct jobs delivered = %d, want %d", len(seen), total)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("job %d delivered %d times, want once", id, n)
		}
	}
	if n := countRows(t, s, "attempt <> 1 OR state <> 'completed'"); n != 0 {
		t.Fatalf("%d jobs not completed on their first attempt", n)
	}
}

func TestTwoServersOnOneDatabaseShareTheWork(t *testing.T) {
	t.Parallel()
	a := queuedtest.Start(t)
	b := queuedtest.StartOn(t, a.DatabaseURL)
	const total = 1000
	done := make(chan struct{})
	// Workers on both replicas; jobs enqueued only through A. B's workers
	// can only get work through the database and A's NOTIFY.
	snapshot, wg := runWorkers(t, []queuedv1.QueueServiceClient{a.Client, b.Client}, 4, "shared", 8, done)
	for i := 0; i < total; i += 100 {
		batch := make([]*queuedv1.JobSpec, 100)
		for k := range batch {
			batch[k] = spec("shared")
		}
		enqueue(t, a, batch...)
		time.Sleep(20 * time.Millisecond)
	}
	eventually(t, 60*time.Second, "all jobs completed", func() bool {
		return countRows(t, a, "state = 'completed'") == total
	})
	close(done)
	wg.Wait()
	seen := snapshot()
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("job %d delivered %d times", id, n)
		}
	}
	var onB int
	if err := a.Pool().QueryRow(context.Background(), `SELECT count(*) FROM queued_jobs WHERE leased_by IN ('w1', 'w3')`).Scan(&onB); err != nil {
		t.Fatal(err)
	}
	if onB == 0 || onB == total {
		t.Fatalf("jobs worked through replica B = %d of %d, want a share", onB, total)
	}
}

func TestShutdownDrainsStreamsAndHandsBackUnsettledJobs(t *testing.T) {
	t.Parallel()
	a := queuedtest.Start(t)
	b := queuedtest.StartOn(t, a.DatabaseURL)
	ids := enqueue(t, a, spec("drain"), spec("drain"))
	w := openWorker(t, a.Client, &queuedv1.LeaseOpen{Queues: []string{"drain"}, Window: 2, LeaseDuration: dur(time.Hour)})
	j1, j2 := w.next(5*time.Second), w.next(5*time.Second)

	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shutdown <- a.Shutdown(ctx)
	}()
	// In-flight acks still land while draining.
	time.Sleep(100 * time.Millisecond)
	w.ack(j1, []byte("done"))
	// The second job is never settled; the drain timeout (5s in tests) ends
	// the stream and the job goes back, to be worked via replica B.
	if err := <-shutdown; err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
	wb := openWorker(t, b.Client, &queuedv1.LeaseOpen{Queues: []string{"drain"}, Window: 2})
	again := wb.next(10 * time.Second)
	if again.GetJob().GetId() != j2.GetJob().GetId() {
		t.Fatalf("re-leased job %d, want %d", again.GetJob().GetId(), j2.GetJob().GetId())
	}
	if got := getJob(t, b, ids[0].GetId()); got.GetState() != queuedv1.JobState_JOB_STATE_COMPLETED {
		t.Fatalf("acked job state = %v, want completed", got.GetState())
	}
}

func TestDispatcherOfAnAbandonedQueueSetIsRetiredAndRecreated(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	for round := range 3 {
		w := openWorker(t, s.Client, &queuedv1.LeaseOpen{Queues: []string{"a", "b"}, Window: 1})
		enqueue(t, s, spec("b"))
		j := w.next(5 * time.Second)
		w.ack(j, nil)
		if err := w.closeAndWait(); err != nil {
			t.Fatalf("round %d: stream ended with %v", round, err)
		}
		eventually(t, 5*time.Second, "dispatcher retired", func() bool {
			return s.Service().ActiveDispatchers() == 0
		})
	}
	if n := countRows(t, s, "state = 'completed'"); n != 3 {
		t.Fatalf("completed = %d, want 3", n)
	}
}

// TestCrashedReplicasLeasesComeBackAfterExpiry kills a replica (no drain,
// no hand-back, as a killed process) while its worker holds jobs. The jobs
// stay leased until their leases expire, then the surviving replica's
// sweeper takes them back and its worker runs them: nothing is lost.
func TestCrashedReplicasLeasesComeBackAfterExpiry(t *testing.T) {
	t.Parallel()
	a := queuedtest.Start(t)
	b := queuedtest.StartOn(t, a.DatabaseURL)
	enqueue(t, a, spec("crash"), spec("crash"), spec("crash"))
	wa := openWorker(t, a.Client, &queuedv1.LeaseOpen{Queues: []string{"crash"}, Window: 3, LeaseDuration: dur(1500 * time.Millisecond)})
	held := map[int64]bool{}
	for range 3 {
		held[wa.next(5*time.Second).GetJob().GetId()] = true
	}
	crashed := time.Now()
	a.Kill()
	wb := openWorker(t, b.Client, &queuedv1.LeaseOpen{Queues: []string{"crash"}, Window: 3})
	for range 3 {
		j := wb.next(15 * time.Second)
		if !held[j.GetJob().GetId()] || j.GetJob().GetAttempt() != 2 {
			t.Fatalf("re-leased %v, want one of the crashed replica's jobs on attempt 2", j.GetJob())
		}
		if since := time.Since(crashed); since < time.Second {
			t.Fatalf("job %d came back %v after the crash, before its lease expired", j.GetJob().GetId(), since)
		}
		wb.ack(j, nil)
	}
	eventually(t, 10*time.Second, "all completed", func() bool { return countRows(t, b, "state = 'completed'") == 3 })
}

package queued_test

import (
	"context"
	"fmt"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	queued "github.com/queued-dev/queued/clients/go"
	"github.com/queued-dev/queued/internal/queuedtest"
)

// BenchmarkWorkerDrain drains a backlog of no-op jobs with one Worker of
// Concurrency 256, the SDK side of queuebench's S2. Each iteration enqueues
// drainJobs jobs, then times the worker from Run until the last handler
// returned. The server runs in the same process (queuedtest), so cpu-µs/job
// is the whole process's CPU: the worker's plus the server's share. To see
// the worker's own share, the worker's client and Run carry the pprof label
// side=worker (goroutines inherit it), so a CPU profile splits the two:
//
//	go test -run '^$' -bench WorkerDrain -benchtime 1x -count 3 -cpuprofile cpu.out ./clients/go
//	go tool pprof -tagfocus side=worker -top cpu.out   # Total samples / jobs = worker CPU per job
func BenchmarkWorkerDrain(b *testing.B) {
	const drainJobs, batch, concurrency = 20000, 1000, 256
	s := queuedtest.Start(b)
	c := dial(b, s.GRPCAddr())
	ctx := context.Background()
	workerSide := pprof.WithLabels(ctx, pprof.Labels("side", "worker"))
	var wc *queued.Client
	pprof.Do(workerSide, pprof.Labels(), func(context.Context) { wc = dial(b, s.GRPCAddr()) })
	var jobs int
	var wall time.Duration
	var cpu time.Duration
	b.ResetTimer()
	b.StopTimer()
	for i := range b.N {
		queue := fmt.Sprint("drain", i)
		specs := make([]queued.JobSpec, batch)
		for range drainJobs / batch {
			for k := range specs {
				specs[k] = queued.NewSpec(queue, "noop", nil)
			}
			if _, err := c.EnqueueMany(ctx, specs...); err != nil {
				b.Fatalf("EnqueueMany() = %v", err)
			}
		}
		done := make(chan struct{})
		var n int
		var left = make(chan struct{}, drainJobs)
		w := queued.NewWorker(wc, queued.WorkerConfig{Queues: []string{queue}, Concurrency: concurrency})
		w.Handle("noop", func(ctx context.Context, job *queued.Job) ([]byte, error) {
			left <- struct{}{}
			return nil, nil
		})
		go func() {
			for range left {
				n++
				if n == drainJobs {
					close(done)
					return
				}
			}
		}()
		cpu0 := processCPU(b)
		start := time.Now()
		b.StartTimer()
		var r *running
		pprof.Do(workerSide, pprof.Labels(), func(context.Context) { r = run(b, w) })
		select {
		case <-done:
		case <-time.After(5 * time.Minute):
			b.Fatalf("only %d of %d jobs ran", n, drainJobs)
		}
		b.StopTimer()
		wall += time.Since(start)
		cpu += processCPU(b) - cpu0
		jobs += drainJobs
		r.stop(60 * time.Second)
		if left := countJobs(b, s, fmt.Sprintf("queue = '%s' AND state <> 'completed'", queue)); left != 0 {
			b.Fatalf("%d jobs of %s not completed after Run returned", left, queue)
		}
	}
	b.ReportMetric(float64(jobs)/wall.Seconds(), "jobs/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(jobs), "cpu-µs/job")
}

// processCPU is the user+system CPU time this process has used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	queued "github.com/queued-dev/queued/clients/go"
)

func init() {
	register(&command{
		name:    "work",
		args:    "QUEUE [QUEUE...]",
		summary: "a debugging worker: print each job and ack it (or fail it with --fail)",
		setup:   setupWork,
	})
}

func setupWork(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	var (
		concurrency = fs.Int("concurrency", 1, "jobs worked at once")
		maxJobs     = fs.Int("max", 0, "stop after this many jobs (0: until interrupted)")
		failWith    = fs.String("fail", "", "fail every job with this error instead of acking it")
		permanent   = fs.Bool("permanent", false, "with --fail: fail without retries")
		result      = fs.String("result", "", "result to store when acking")
	)
	return func(ctx context.Context, queues []string) error {
		if len(queues) == 0 {
			return errors.New("want at least one QUEUE")
		}
		c, err := e.dial(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, stop := context.WithCancel(ctx)
		defer stop()
		w := queued.NewWorker(c, queued.WorkerConfig{Queues: queues, Concurrency: *concurrency})
		var printMu sync.Mutex
		var seen atomic.Int64
		handler := func(ctx context.Context, job *queued.Job) ([]byte, error) {
			if *maxJobs > 0 && seen.Add(1) > int64(*maxJobs) {
				return nil, queued.ErrRelease // over --max: hand it back unworked
			}
			printMu.Lock()
			if e.json {
				_ = printJSON(e.stdout, viewOf(job))
			} else {
				fmt.Fprintf(e.stdout, "job %d %s/%s attempt %d/%d payload %s\n", job.ID, job.Queue, job.Name, job.Attempt, job.MaxAttempts, blob(job.Payload))
			}
			printMu.Unlock()
			if *maxJobs > 0 && seen.Load() >= int64(*maxJobs) {
				defer stop()
			}
			if *failWith != "" {
				err := errors.New(*failWith)
				if *permanent {
					err = queued.Permanent(err)
				}
				return nil, err
			}
			return []byte(*result), nil
		}
		w.HandleAll(handler)
		fmt.Fprintf(e.stderr, "working %s on %s; Ctrl-C to stop\n", strings.Join(queues, ", "), e.server)
		return w.Run(ctx)
	}
}

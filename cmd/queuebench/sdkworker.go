package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	queued "github.com/queued-dev/queued/clients/go"
)

// Worker kinds for -worker.
const (
	workerSDK = "sdk" // the Go SDK's Worker with a no-op handler
	workerRaw = "raw" // a Lease stream driven by hand (load.go)
)

// sdkWorker is the Go SDK's Worker as an application runs it: one client
// (connection) per worker process, a no-op handler for every job name,
// Concurrency equal to the window the raw worker would ask for. Unlike the
// raw worker it waits for the server's answer to every ack, renews leases
// and runs each handler in its own goroutine: what users pay.
type sdkWorker struct {
	client *queued.Client
	cancel context.CancelFunc
	done   chan error
}

// startSDKWorker returns once the worker's lease stream is open, as
// startWorker does, so that no scenario's clock includes connecting.
func startSDKWorker(ctx context.Context, e *env, p workerParams) (*sdkWorker, error) {
	client, err := queued.Dial(ctx, e.addr)
	if err != nil {
		return nil, err
	}
	logs := &sdkLog{acks: p.AckErrors, opened: make(chan struct{})}
	w := queued.NewWorker(client, queued.WorkerConfig{
		Queues:        []string{p.Queue},
		Concurrency:   p.Window,
		LeaseDuration: p.LeaseDuration,
		WorkerID:      "queuebench-sdk",
		Logger:        slog.New(logs),
	})
	w.HandleAll(func(_ context.Context, job *queued.Job) ([]byte, error) {
		lj := leasedJob{ID: job.ID, Payload: job.Payload, Metadata: job.Metadata, Children: len(job.Children)}
		for _, c := range job.Children {
			if c.State == queued.StateCompleted {
				lj.ChildrenCompleted++
			}
		}
		p.OnJob(lj)
		return nil, nil
	})
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	sw := &sdkWorker{client: client, cancel: cancel, done: make(chan error, 1)}
	go func() { sw.done <- w.Run(runCtx) }()
	select {
	case <-logs.opened:
		return sw, nil
	case err := <-sw.done:
		cancel()
		client.Close()
		return nil, fmt.Errorf("the SDK worker stopped before its stream opened: %v", err)
	case <-time.After(30 * time.Second):
		err = errors.New("the SDK worker's lease stream did not open within 30 s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	cancel()
	<-sw.done
	client.Close()
	return nil, err
}

// stop runs the SDK's graceful shutdown: Run returns once the server has
// answered every settlement, so the database holds the outcome.
func (w *sdkWorker) stop(timeout time.Duration) error {
	defer w.client.Close()
	w.cancel()
	select {
	case err := <-w.done:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("the SDK worker did not shut down within %v", timeout)
	}
}

// sdkLog is the SDK worker's logger. The SDK reports a settlement the
// server refused, or that could not be delivered, only in its log ("settle
// job"): those count as ack errors in the exactly-once check. Its "lease
// stream open" line tells that the worker is ready.
type sdkLog struct {
	acks   *atomic.Int64
	opened chan struct{}
	once   sync.Once
}

func (l *sdkLog) Enabled(context.Context, slog.Level) bool { return true }

func (l *sdkLog) Handle(_ context.Context, r slog.Record) error {
	switch {
	case r.Message == "lease stream open":
		l.once.Do(func() { close(l.opened) })
	case r.Message == "settle job" && r.Level >= slog.LevelWarn:
		l.acks.Add(1)
	}
	return nil
}

func (l *sdkLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *sdkLog) WithGroup(string) slog.Handler      { return l }

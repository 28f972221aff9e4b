// Command watchbench measures what Watch costs the queue: it enqueues and
// acks N jobs through a real server and reports jobs/s and WAL bytes per
// job, for three setups on fresh databases:
//
//	no-capture  the schema without Watch's trigger and index (the cost floor)
//	idle        Watch's change capture in place, nobody watching
//	watched     one watcher following the queue (every event)
//
// Usage: go run ./cmd/watchbench [-db postgres://postgres@127.0.0.1:5432/postgres] [-jobs 20000] [-runs 3]
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/internal/app"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "watchbench:", err)
		os.Exit(1)
	}
}

type result struct {
	Setup      string  `json:"setup"`
	Jobs       int     `json:"jobs"`
	JobsPerSec float64 `json:"jobs_per_sec"`
	WALPerJob  float64 `json:"wal_bytes_per_job"`
	Events     int64   `json:"watch_events"`
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("watchbench", flag.ContinueOnError)
	server := fs.String("db", "postgres://postgres@127.0.0.1:5432/postgres", "PostgreSQL server URL (a database is created per run)")
	jobs := fs.Int("jobs", 20000, "jobs per run")
	batch := fs.Int("batch", 100, "jobs per Enqueue call")
	runs := fs.Int("runs", 3, "runs per setup; the median is reported")
	if err := fs.Parse(args); err != nil {
		return err
	}
	byName := map[string][]result{}
	setups := []string{"no-capture", "idle", "watched"}
	for r := 0; r < *runs; r++ {
		for _, setup := range setups {
			res, err := once(ctx, *server, setup, *jobs, *batch)
			if err != nil {
				return fmt.Errorf("%s: %w", setup, err)
			}
			byName[setup] = append(byName[setup], res)
		}
	}
	fmt.Fprintf(out, "%-11s %8s %10s %12s %12s\n", "setup", "jobs", "jobs/s", "WAL B/job", "events")
	for _, setup := range setups {
		rs := byName[setup]
		m := median(rs)
		fmt.Fprintf(out, "%-11s %8d %10.0f %12.0f %12d\n", m.Setup, m.Jobs, m.JobsPerSec, m.WALPerJob, m.Events)
	}
	for _, setup := range setups {
		line, _ := json.Marshal(median(byName[setup]))
		fmt.Fprintln(out, string(line))
	}
	return nil
}

// median picks the run with the median throughput, with its WAL figure.
func median(rs []result) result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b result) int {
		switch {
		case a.JobsPerSec < b.JobsPerSec:
			return -1
		case a.JobsPerSec > b.JobsPerSec:
			return 1
		}
		return 0
	})
	return s[len(s)/2]
}

func once(ctx context.Context, server, setup string, n, batch int) (res result, err error) {
	dbName, dbURL, drop, err := createDatabase(ctx, server)
	if err != nil {
		return res, err
	}
	defer drop()
	a, err := app.Start(ctx, app.Config{GRPCAddr: "127.0.0.1:0", DatabaseURL: dbURL})
	if err != nil {
		return res, err
	}
	defer a.Shutdown(context.WithoutCancel(ctx))
	if setup == "no-capture" {
		_, err := a.Pool().Exec(ctx, `DROP TRIGGER queued_jobs_changed ON queued_jobs;
			DROP TRIGGER queued_jobs_inserted ON queued_jobs;
			DROP INDEX queued_jobs_change;
			ALTER TABLE queued_jobs ALTER COLUMN change_xid DROP DEFAULT`)
		if err != nil {
			return res, fmt.Errorf("remove change capture from %s: %w", dbName, err)
		}
	}
	conn, err := grpc.NewClient(a.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return res, err
	}
	defer conn.Close()
	client := queuedv1.NewQueueServiceClient(conn)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var events atomic.Int64
	if setup == "watched" {
		stream, err := queuedv1.NewWatchServiceClient(conn).Watch(ctx, &queuedv1.WatchRequest{Queue: "bench"})
		if err != nil {
			return res, err
		}
		if _, err := stream.Recv(); err != nil { // the watch is live
			return res, err
		}
		go func() {
			for {
				if _, err := stream.Recv(); err != nil {
					return
				}
				events.Add(1)
			}
		}()
	}

	lease, err := client.Lease(ctx)
	if err != nil {
		return res, err
	}
	if err := lease.Send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Open{Open: &queuedv1.LeaseOpen{Queues: []string{"bench"}, Window: 256}}}); err != nil {
		return res, err
	}
	var walStart string
	if err := a.Pool().QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&walStart); err != nil {
		return res, err
	}
	start := time.Now()
	acked := make(chan struct{})
	go func() {
		done := 0
		for done < n {
			m, err := lease.Recv()
			if err != nil {
				return
			}
			if j := m.GetJob(); j != nil {
				_ = lease.Send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Ack{Ack: &queuedv1.AckRequest{JobId: j.GetJob().GetId(), LeaseToken: j.GetLeaseToken()}}})
				done++
			}
		}
		close(acked)
	}()
	var wg sync.WaitGroup
	var enqErr atomic.Value
	for p := 0; p < 4; p++ {
		wg.Go(func() {
			for i := p * batch; i < n; i += 4 * batch {
				specs := make([]*queuedv1.JobSpec, min(batch, n-i))
				for k := range specs {
					specs[k] = &queuedv1.JobSpec{Queue: "bench", Name: "noop", Payload: []byte("payload")}
				}
				if _, err := client.Enqueue(ctx, &queuedv1.EnqueueRequest{Jobs: specs}); err != nil {
					enqErr.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := enqErr.Load().(error); err != nil {
		return res, err
	}
	select {
	case <-acked:
	case <-time.After(5 * time.Minute):
		return res, errors.New("jobs not all leased within 5 minutes")
	}
	// Acks travel on the stream; wait until they are all committed.
	for {
		var left int
		if err := a.Pool().QueryRow(ctx, `SELECT count(*) FROM queued_jobs WHERE state <> 'completed'`).Scan(&left); err != nil {
			return res, err
		}
		if left == 0 {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	var wal float64
	if err := a.Pool().QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)`, walStart).Scan(&wal); err != nil {
		return res, err
	}
	return result{Setup: setup, Jobs: n, JobsPerSec: float64(n) / elapsed.Seconds(), WALPerJob: wal / float64(n), Events: events.Load()}, nil
}

// createDatabase makes a fresh database on the server and returns its URL
// and a function that drops it.
func createDatabase(ctx context.Context, server string) (string, string, func(), error) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "watchbench_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		return "", "", nil, err
	}
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		conn.Close(ctx)
		return "", "", nil, err
	}
	u, err := url.Parse(server)
	if err != nil {
		conn.Close(ctx)
		return "", "", nil, err
	}
	u.Path = "/" + name
	drop := func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
		conn.Close(context.WithoutCancel(ctx))
	}
	return name, u.String(), drop, nil
}

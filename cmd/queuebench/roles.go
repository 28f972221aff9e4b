package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // profiles of the server under load, on -pprof
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/internal/app"
	"github.com/queued-dev/queued/service"
)

// runRole runs a child role and reports whether this process was one.
func runRole() (bool, int) {
	role := os.Getenv(roleEnv)
	if role == "" {
		return false, 0
	}
	var err error
	switch role {
	case "server":
		err = serverMain(os.Args[1:])
	case "holder":
		err = holderMain(os.Args[1:])
	default:
		err = fmt.Errorf("unknown %s %q", roleEnv, role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "queuebench %s: %v\n", role, err)
		return true, 1
	}
	return true, 0
}

// serverMain runs queued exactly as cmd/queued does (internal/app), prints
// "ADDR host:port" once it listens, and drains on SIGTERM or when its stdin
// closes (the benchmark died).
func serverMain(args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	dbURL := fs.String("database-url", "", "database")
	maxConns := fs.Int("max-conns", 0, "pool size")
	flushers := fs.Int("flushers", 0, "service Flushers")
	writeMax := fs.Int("write-batch-max", 0, "service WriteBatchMax")
	claimMax := fs.Int("claim-batch-max", 0, "service ClaimBatchMax")
	retention := fs.Duration("retention", 0, "service Retention")
	pprofAddr := fs.String("pprof", "", "net/http/pprof address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	a, err := app.Start(ctx, app.Config{
		GRPCAddr:    "127.0.0.1:0",
		DatabaseURL: *dbURL,
		MaxConns:    int32(*maxConns),
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		Service: service.Config{
			Flushers:      *flushers,
			WriteBatchMax: *writeMax,
			ClaimBatchMax: *claimMax,
			Retention:     *retention,
		},
	})
	if err != nil {
		return err
	}
	if *pprofAddr != "" {
		go func() { _ = http.ListenAndServe(*pprofAddr, nil) }()
	}
	fmt.Printf("ADDR %s\n", a.GRPCAddr())
	werr := a.Wait(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return errors.Join(werr, a.Shutdown(sctx))
}

// holderMain is the worker S6 kills: it opens a stream with a window of n,
// receives n jobs without settling any, prints "HELD n" and waits for
// SIGKILL.
func holderMain(args []string) error {
	fs := flag.NewFlagSet("holder", flag.ContinueOnError)
	addr := fs.String("addr", "", "server")
	queue := fs.String("queue", "", "queue")
	n := fs.Int("n", 1000, "leases to hold")
	if err := fs.Parse(args); err != nil {
		return err
	}
	e := &env{addr: *addr}
	conn, client, err := e.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	stream, err := client.Lease(context.Background())
	if err != nil {
		return err
	}
	err = stream.Send(&queuedv1.LeaseRequest{Msg: &queuedv1.LeaseRequest_Open{Open: &queuedv1.LeaseOpen{
		Queues: []string{*queue}, Window: int32(*n), WorkerId: "holder",
		// Long leases: only the stream's end may bring these jobs back.
		LeaseDuration: durationpb.New(10 * time.Minute),
	}}})
	if err != nil {
		return err
	}
	held := 0
	for held < *n {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		if m.GetJob() != nil {
			held++
		}
	}
	fmt.Printf("HELD %d\n", held)
	select {}
}

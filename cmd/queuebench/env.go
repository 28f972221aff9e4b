package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/store/pglocal"
)

// roleEnv selects what a queuebench process is: the benchmark itself (unset),
// the queued server it starts as a child ("server"), or a worker that takes
// leases and waits to be killed ("holder", for S6). Child processes are this
// same binary, so that a test binary can play every role too.
const roleEnv = "QUEUEBENCH_ROLE"

// serverOptions tune the queued server the benchmark starts.
type serverOptions struct {
	MaxConns      int
	Flushers      int
	WriteBatchMax int
	ClaimBatchMax int
	Retention     time.Duration
	Pprof         string // address for net/http/pprof in the server, "" for none
}

func (o serverOptions) args(dbURL string) []string {
	return []string{
		"-database-url", dbURL,
		"-max-conns", strconv.Itoa(o.MaxConns),
		"-flushers", strconv.Itoa(o.Flushers),
		"-write-batch-max", strconv.Itoa(o.WriteBatchMax),
		"-claim-batch-max", strconv.Itoa(o.ClaimBatchMax),
		"-retention", o.Retention.String(),
		"-pprof", o.Pprof,
	}
}

// envConfig says where PostgreSQL and queued come from.
type envConfig struct {
	PG               string // "private": a pglocal cluster in a temp dir; "local": fresh database on 127.0.0.1:5432
	DatabaseURL      string // use this database as is
	Server           string // use this running server instead of starting one
	QueuedPID        int    // pid of that server, for its CPU and RSS
	PGStatStatements bool   // preload pg_stat_statements in the private cluster
	Worker           string // workerSDK or workerRaw
	ServerOpts       serverOptions
}

// env is a running benchmark environment: a database, a queued server
// reached over gRPC, and a pool for statistics and fixtures.
type env struct {
	cfg      envConfig
	tmpDir   string
	cluster  *pglocal.Cluster
	adminURL string // server-level URL when we created the database
	dbName   string
	dbURL    string
	pool     *pgxpool.Pool
	server   *exec.Cmd
	addr     string
	cpu      cpuProbe
	stderr   io.Writer
	// statsSettle is how long to wait for backends to publish xact_commit
	// before the end snapshot.
	statsSettle time.Duration
}

func startEnv(ctx context.Context, cfg envConfig, stderr io.Writer) (_ *env, err error) {
	e := &env{cfg: cfg, stderr: stderr, statsSettle: 1100 * time.Millisecond}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	switch {
	case cfg.DatabaseURL != "":
		e.dbURL = cfg.DatabaseURL
	case cfg.PG == "local":
		e.adminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
		e.dbName = fmt.Sprintf("queuebench_%d", time.Now().UnixNano())
		if err := createDatabase(ctx, e.adminURL, e.dbName); err != nil {
			return nil, err
		}
		e.dbURL = strings.Replace(e.adminURL, "/postgres?", "/"+e.dbName+"?", 1)
	case cfg.PG == "private":
		if e.tmpDir, err = os.MkdirTemp("", "queuebench-"); err != nil {
			return nil, err
		}
		// The cluster may run as the postgres user (when we are root).
		if err := os.Chmod(e.tmpDir, 0o755); err != nil {
			return nil, err
		}
		settings := map[string]string{
			// Durable: these are PostgreSQL's defaults, stated so that
			// nobody wonders.
			"fsync":              "on",
			"synchronous_commit": "on",
			"full_page_writes":   "on",
			"max_connections":    "200",
		}
		if cfg.PGStatStatements {
			settings["shared_preload_libraries"] = "pg_stat_statements"
		}
		fmt.Fprintf(stderr, "starting a private PostgreSQL in %s\n", e.tmpDir)
		e.cluster, err = pglocal.Start(ctx, pglocal.Options{DataDir: filepath.Join(e.tmpDir, "pg"), Settings: settings})
		if err != nil {
			return nil, err
		}
		e.adminURL = e.cluster.URL("postgres")
		e.dbName = "queuebench"
		if err := createDatabase(ctx, e.adminURL, e.dbName); err != nil {
			return nil, err
		}
		e.dbURL = e.cluster.URL(e.dbName)
	default:
		return nil, fmt.Errorf("-pg must be private or local, got %q", cfg.PG)
	}

	if cfg.Server != "" {
		e.addr = cfg.Server
		e.cpu.queued = cfg.QueuedPID
	} else if err := e.startServer(ctx); err != nil {
		return nil, err
	}

	if e.pool, err = pgxpool.New(ctx, e.dbURL); err != nil {
		return nil, err
	}
	if err := e.waitForSchema(ctx); err != nil {
		return nil, err
	}
	if cfg.PGStatStatements {
		if _, err := e.pool.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
			return nil, err
		}
	}
	if err := e.refreshPostmaster(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// refreshPostmaster finds the postmaster through a backend's parent, which
// works for any server on this machine (and again after a restart).
func (e *env) refreshPostmaster(ctx context.Context) error {
	backend, err := retry(ctx, func() (int, error) {
		var pid int
		err := e.pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid)
		return pid, err
	})
	if err != nil {
		return err
	}
	e.cpu.postmaster = postmasterOf(backend)
	return nil
}

// startServer runs queued as a child process, so that its CPU time and
// memory are its own and not mixed with the load generator's.
func (e *env) startServer(ctx context.Context) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, e.cfg.ServerOpts.args(e.dbURL)...)
	cmd.Env = append(os.Environ(), roleEnv+"=server")
	cmd.Stderr = e.stderr
	if e.tmpDir != "" {
		// The server's own log (errors only; S6 makes some on purpose).
		f, err := os.Create(filepath.Join(e.tmpDir, "queued.log"))
		if err != nil {
			return err
		}
		defer f.Close()
		cmd.Stderr = f
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	_ = stdin // kept open: the server exits when it closes (we died)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	e.server = cmd
	e.cpu.queued = cmd.Process.Pid
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
				addr <- a
			}
		}
	}()
	select {
	case e.addr = <-addr:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(60 * time.Second):
		return errors.New("the queued server did not start within 60 s")
	}
}

func (e *env) waitForSchema(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		var ok bool
		err := e.pool.QueryRow(ctx, `SELECT to_regclass('queued_jobs') IS NOT NULL`).Scan(&ok)
		if err == nil && ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the job table did not appear within 60 s (is the server migrating this database?): %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dial opens a new gRPC connection: each simulated worker process and each
// producer gets its own, as separate processes would.
func (e *env) dial() (*grpc.ClientConn, queuedv1.QueueServiceClient, error) {
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, err
	}
	return conn, queuedv1.NewQueueServiceClient(conn), nil
}

// reset empties the job table between runs so that each starts alike, and
// checkpoints so that WAL figures do not depend on the previous run's dirty
// pages.
func (e *env) reset(ctx context.Context) error {
	if _, err := e.pool.Exec(ctx, `TRUNCATE queued_jobs`); err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	return e.checkpoint(ctx)
}

// checkpoint flushes dirty pages, on a private cluster only.
func (e *env) checkpoint(ctx context.Context) error {
	if e.cluster == nil {
		return nil // a shared server: do not force I/O on everyone
	}
	if _, err := e.pool.Exec(ctx, `CHECKPOINT`); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

func (e *env) close() {
	if e.server != nil {
		_ = e.server.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = e.server.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = e.server.Process.Kill()
			<-done
		}
	}
	if e.pool != nil {
		e.pool.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if e.cluster != nil {
		if err := e.cluster.Stop(ctx); err != nil {
			fmt.Fprintf(e.stderr, "stop private PostgreSQL: %v\n", err)
		}
	} else if e.dbName != "" && e.adminURL != "" {
		if err := dropDatabase(ctx, e.adminURL, e.dbName); err != nil {
			fmt.Fprintf(e.stderr, "drop database %s: %v\n", e.dbName, err)
		}
	}
	if e.tmpDir != "" {
		_ = os.RemoveAll(e.tmpDir)
	}
}

func createDatabase(ctx context.Context, adminURL, name string) error {
	pool, err := pgxpool.New(ctx, adminURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

func dropDatabase(ctx context.Context, adminURL, name string) error {
	pool, err := pgxpool.New(ctx, adminURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	_, err = pool.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
	return err
}

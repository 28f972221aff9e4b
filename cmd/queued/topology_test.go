package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/internal/queuedtest"
	"github.com/queued-dev/queued/store/storetest"
)

// TestTwoReplicasOneDatabase runs the docker-compose topology without
// containers: two real queued processes on one database, producers and
// workers spread over both. Every job enqueued through either replica is
// worked exactly once by a worker on either; both replicas report ready and
// serve metrics; SIGTERM stops both cleanly.
func TestTwoReplicasOneDatabase(t *testing.T) {
	t.Parallel()
	bin := buildQueued(t)
	dbURL := storetest.NewDatabase(t)
	replicas := []*process{startQueued(t, bin, dbURL, "replica-a"), startQueued(t, bin, dbURL, "replica-b")}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ledger := queuedtest.NewLedger()
	var producers []*queuedtest.Producer
	var producersDone, workersDone []<-chan struct{}
	const perProducer = 300
	for i, r := range replicas {
		client := dial(t, r.grpcAddr)
		for k := range 2 {
			p, done := queuedtest.RunProducer(ctx, client, queuedtest.ProducerOptions{
				Queue: "welcome", Name: fmt.Sprintf("user-service-%d-%d", i, k), Count: perProducer,
			})
			producers = append(producers, p)
			producersDone = append(producersDone, done)
			_, done = queuedtest.RunWorker(ctx, client, queuedtest.WorkerOptions{
				Queues: []string{"welcome"}, Window: 8, ID: fmt.Sprintf("email-worker-%d-%d", i, k), Ledger: ledger,
			})
			workersDone = append(workersDone, done)
		}
	}
	for _, d := range producersDone {
		<-d
	}
	var enqueued []int64
	for _, p := range producers {
		enqueued = append(enqueued, p.Enqueued()...)
	}
	if got, want := len(enqueued), len(producers)*perProducer; got != want {
		t.Fatalf("%d jobs enqueued, want %d", got, want)
	}

	conn := dbConn(t, dbURL)
	deadline := time.Now().Add(60 * time.Second)
	for {
		var completed int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM queued_jobs WHERE id = ANY($1) AND state = 'completed'`, enqueued).Scan(&completed); err != nil {
			t.Fatal(err)
		}
		if completed == len(enqueued) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d jobs completed after 60 s", completed, len(enqueued))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v := ledger.Violations(); len(v) > 0 {
		t.Fatalf("%d redeliveries after a confirmed ack, e.g. %s", len(v), v[0])
	}
	if got, want := ledger.Deliveries(), len(enqueued); got != want {
		t.Errorf("%d deliveries for %d jobs, want each delivered exactly once (nothing failed)", got, want)
	}
	var leasedBy []string
	if err := conn.QueryRow(ctx, `SELECT array_agg(DISTINCT leased_by ORDER BY leased_by) FROM queued_jobs`).Scan(&leasedBy); err != nil {
		t.Fatal(err)
	}

	// Each replica is ready, says so to the container health probe, and
	// counts what went through it.
	enqueuedByReplicas := 0.0
	for _, r := range replicas {
		if out, err := exec.Command(bin, "-healthcheck", "-http-addr", r.httpAddr).CombinedOutput(); err != nil {
			t.Errorf("queued -healthcheck against %s: %v\n%s", r.name, err, out)
		}
		body := get(t, "http://"+r.httpAddr+"/metrics")
		enqueuedByReplicas += metricValue(body, `queued_jobs_enqueued_total{queue="welcome"}`)
		if metricValue(body, `queued_workers_connected`) != 2 {
			t.Errorf("%s: queued_workers_connected = %v, want 2", r.name, metricValue(body, `queued_workers_connected`))
		}
	}
	if enqueuedByReplicas != float64(len(enqueued)) {
		t.Errorf("replicas counted %v enqueued jobs, want %d", enqueuedByReplicas, len(enqueued))
	}

	cancel()
	for _, d := range workersDone {
		<-d
	}
	for _, r := range replicas {
		if err := r.stop(); err != nil {
			t.Errorf("%s after SIGTERM: %v\n%s", r.name, err, r.log.String())
		}
		if err := exec.Command(bin, "-healthcheck", "-http-addr", r.httpAddr).Run(); err == nil {
			t.Errorf("queued -healthcheck against stopped %s succeeded, want failure", r.name)
		}
	}
	t.Logf("%d jobs through 2 replicas, %d deliveries, workers %v", len(enqueued), ledger.Deliveries(), leasedBy)
}

// buildQueued builds this command into a temporary folder.
func buildQueued(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "queued")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type process struct {
	name               string
	cmd                *exec.Cmd
	grpcAddr, httpAddr string
	log                *syncBuffer
	exited             chan error
}

// startQueued runs the binary on free ports and waits until it logs that
// it is serving, which names the addresses it bound.
func startQueued(t *testing.T, bin, dbURL, name string) *process {
	t.Helper()
	cmd := exec.Command(bin, "-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0",
		"-log-format", "json", "-replica-id", name, "-drain-timeout", "5s")
	cmd.Env = append(os.Environ(), "QUEUED_DATABASE_URL="+dbURL)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, log: &syncBuffer{}, exited: make(chan error, 1)}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.log.WriteString(line + "\n")
			var rec struct{ Msg, GRPC, HTTP string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "queued is serving" {
				p.grpcAddr, p.httpAddr = rec.GRPC, rec.HTTP
				close(ready)
			}
		}
		p.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})
	select {
	case <-ready:
	case err := <-p.exited:
		t.Fatalf("%s exited before serving: %v\n%s", name, err, p.log.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not start within 60 s\n%s", name, p.log.String())
	}
	return p
}

// stop sends SIGTERM and waits for a clean exit.
func (p *process) stop() error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-p.exited:
		return err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("did not exit within 30 s of SIGTERM")
	}
}

func dial(t *testing.T, addr string) queuedv1.QueueServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return queuedv1.NewQueueServiceClient(conn)
}

func dbConn(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	return b.String()
}

// metricValue returns the value of one series in an exposition, or -1.
func metricValue(body, series string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return -1
}

// syncBuffer collects a process's log from one goroutine while the test
// reads it from another.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) WriteString(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.WriteString(v)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

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
// containers: two real queued processes on one database, the welcome-email
// user-service on one and its email-worker on the other, plus raw-gRPC
// producers and workers spread over both that keep exact books. Every job
// enqueued through either replica is worked exactly once by a worker on
// either; a signup through replica A is emailed by the worker on replica B;
// both replicas report ready and serve metrics; SIGTERM stops both cleanly.
func TestTwoReplicasOneDatabase(t *testing.T) {
	t.Parallel()
	bin := buildQueued(t)
	dbURL := storetest.NewDatabase(t)
	replicas := []*process{startQueued(t, bin, dbURL, "replica-a"), startQueued(t, bin, dbURL, "replica-b")}

	// The example pair, as docker-compose runs it: producer on one replica,
	// worker on the other.
	sentLog := filepath.Join(t.TempDir(), "sent.log")
	users := startExample(t, filepath.Join(filepath.Dir(bin), "user-service"), "QUEUED_ADDR="+replicas[0].grpcAddr, "USER_SERVICE_ADDR=127.0.0.1:0")
	startExample(t, filepath.Join(filepath.Dir(bin), "email-worker"), "QUEUED_ADDR="+replicas[1].grpcAddr, "EMAIL_LOG_FILE="+sentLog)
	usersAddr, ok := strings.CutPrefix(strings.Fields(users.firstLine)[3], "http://")
	if !ok {
		t.Fatalf("user-service said %q", users.firstLine)
	}
	resp, err := http.Post("http://"+usersAddr+"/signup", "application/json", strings.NewReader(`{"email":"grace@example.com","name":"Grace"}`))
	if err != nil {
		t.Fatalf("POST /signup: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /signup = %s", resp.Status)
	}

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
	waitUntil(t, 30*time.Second, "the welcome email sent by the worker on replica B", func() bool {
		b, _ := os.ReadFile(sentLog)
		return strings.Contains(string(b), "to=grace@example.com")
	})
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
		want := 2.0 // the raw workers
		if r == replicas[1] {
			want++ // and the email-worker's stream
		}
		if got := metricValue(body, `queued_workers_connected`); got != want {
			t.Errorf("%s: queued_workers_connected = %v, want %v", r.name, got, want)
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

// buildQueued builds this command and the welcome-email pair into a
// temporary folder and returns the path of queued.
func buildQueued(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), ".",
		"../../examples/welcome-email/user-service", "../../examples/welcome-email/email-worker").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "queued")
}

type example struct {
	cmd       *exec.Cmd
	firstLine string
}

// startExample runs an example program with extra environment and waits
// for the first line it prints (its "listening"/"working" banner).
func startExample(t *testing.T, path string, env ...string) *example {
	t.Helper()
	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		first := true
		for sc.Scan() { // keep draining so the program never blocks on stdout
			if first {
				lines <- sc.Text()
				first = false
			}
		}
	}()
	select {
	case l := <-lines:
		return &example{cmd: cmd, firstLine: l}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s printed nothing within 30 s", path)
		return nil
	}
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
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
			_, _ = p.log.Write([]byte(line + "\n"))
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

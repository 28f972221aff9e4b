// The welcome-email pair, built and run as the README runs them, against a
// real server: a signup over HTTP becomes a job, and the email worker
// "sends" it after a flaky first attempt.
package welcomeemail_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	queued "github.com/queued-dev/queued/clients/go"
	"github.com/queued-dev/queued/internal/queuedtest"
)

func TestSignupSendsOneWelcomeEmailAfterARetry(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	build := exec.Command(goTool(), "build", "-o", bin+string(os.PathSeparator), "./user-service", "./email-worker")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the example: %v\n%s", err, out)
	}
	s := queuedtest.Start(t)
	logFile := filepath.Join(t.TempDir(), "sent.log")
	env := append(os.Environ(), "QUEUED_ADDR="+s.GRPCAddr(), "EMAIL_LOG_FILE="+logFile, "EMAIL_WORKER_FLAKY=1")

	worker, workerOut := start(t, env, filepath.Join(bin, "email-worker"))
	workerLog := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(workerOut)
		workerLog <- string(b)
	}()
	users, usersOut := start(t, env, filepath.Join(bin, "user-service"), "--listen", "127.0.0.1:0")
	line := readLine(t, usersOut)
	addr, ok := strings.CutPrefix(strings.Fields(line)[3], "http://")
	if !strings.HasPrefix(line, "user-service listening on http://") || !ok {
		t.Fatalf("user-service said %q", line)
	}

	signup := func() (jobID int64, duplicate bool) {
		resp, err := http.Post("http://"+addr+"/signup", "application/json", strings.NewReader(`{"email":"ada@example.com","name":"Ada"}`))
		if err != nil {
			t.Fatalf("POST /signup: %v", err)
		}
		defer resp.Body.Close()
		var body struct {
			JobID     int64 `json:"job_id"`
			Duplicate bool  `json:"duplicate"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST /signup = %s, %v", resp.Status, err)
		}
		return body.JobID, body.Duplicate
	}
	id, dup := signup()
	// The form is submitted twice while the first email is still pending
	// (its first attempt fails and waits a second before the retry).
	again, dup2 := signup()
	if dup || !dup2 || again != id {
		t.Fatalf("signups gave job %d (duplicate %v) and %d (duplicate %v), want one job", id, dup, again, dup2)
	}

	deadline := time.Now().Add(30 * time.Second)
	var sent []byte
	for time.Now().Before(deadline) {
		sent, _ = os.ReadFile(logFile)
		if len(sent) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if want := `to=ada@example.com subject="Welcome, Ada!" job=` + strconv.FormatInt(id, 10) + " attempt=2\n"; string(sent) != want {
		t.Fatalf("sent log = %q, want %q", sent, want)
	}

	c, err := queued.Dial(context.Background(), s.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The log line is written before the worker's ack commits: wait for
	// the job to finish rather than read it at once.
	waitCtx, cancelWait := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelWait()
	job, err := c.Wait(waitCtx, id)
	if err != nil {
		t.Fatalf("Wait(%d) = %v", id, err)
	}
	if job.State != queued.StateCompleted || len(job.Errors) != 1 || !strings.Contains(job.Errors[0].Message, "flaky mode") {
		t.Fatalf("job = %s errors %v, want completed after one flaky failure", job.State, job.Errors)
	}

	_ = worker.Process.Signal(os.Interrupt)
	_ = users.Process.Signal(os.Interrupt)
	rest := <-workerLog // the pipe closes when the worker exits
	if !strings.Contains(rest, "sent welcome email to ada@example.com (attempt 2)") {
		t.Errorf("email-worker output %q does not report the send", rest)
	}
	for name, p := range map[string]*exec.Cmd{"email-worker": worker, "user-service": users} {
		if err := p.Wait(); err != nil {
			t.Errorf("%s exited with %v after SIGINT, want a clean exit", name, err)
		}
	}
}

func start(t *testing.T, env []string, path string, args ...string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd, bufio.NewReader(out)
}

func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		l, err := r.ReadString('\n')
		ch <- result{l, err}
	}()
	select {
	case res := <-ch:
		if res.err != nil {
			t.Fatalf("read output: %v", res.err)
		}
		return strings.TrimSpace(res.line)
	case <-time.After(30 * time.Second):
		t.Fatal("no output within 30s")
		return ""
	}
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

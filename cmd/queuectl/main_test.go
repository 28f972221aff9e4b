package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	queued "github.com/queued-dev/queued/clients/go"
	"github.com/queued-dev/queued/internal/queuedtest"
)

// ctl runs queuectl with QUEUED_ADDR pointing at s and returns its output.
func ctl(t *testing.T, s *queuedtest.Server, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	getenv := func(k string) string {
		if k == "QUEUED_ADDR" {
			return s.GRPCAddr()
		}
		return ""
	}
	err := run(ctx, args, getenv, &out, &errOut)
	return out.String(), err
}

func TestEnqueueGetCancelHumanAndJSON(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	out, err := ctl(t, s, "enqueue", "--priority", "3", "--attempts", "7", "--backoff", "fixed:2s", "--meta", "trace=abc", "--unique-key", "u1", "--delay", "1h", "emails", "send_welcome_email", `{"email":"ada@example.com"}`)
	if err != nil || !strings.HasPrefix(out, "enqueued job ") || !strings.Contains(out, "(scheduled)") {
		t.Fatalf("enqueue = %q, %v; want an enqueued scheduled job", out, err)
	}
	out, err = ctl(t, s, "--json", "enqueue", "--unique-key", "u1", "emails", "send_welcome_email")
	if err != nil {
		t.Fatalf("enqueue --json: %v", err)
	}
	var dup queued.Enqueued
	if err := json.Unmarshal([]byte(out), &dup); err != nil || !dup.Duplicate || dup.ID == 0 {
		t.Fatalf("duplicate enqueue printed %q (%v), want JSON with duplicate true", out, err)
	}

	out, err = ctl(t, s, "get", "--json", "1")
	if err != nil {
		t.Fatalf("get --json: %v", err)
	}
	var got struct {
		ID          int64             `json:"id"`
		State       string            `json:"state"`
		Priority    int32             `json:"priority"`
		MaxAttempts int32             `json:"max_attempts"`
		Payload     map[string]string `json:"payload"`
		Metadata    map[string]string `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("get --json printed %q: %v", out, err)
	}
	if got.ID != dup.ID || got.State != "scheduled" || got.Priority != 3 || got.MaxAttempts != 7 || got.Payload["email"] != "ada@example.com" || got.Metadata["trace"] != "abc" {
		t.Fatalf("get --json = %+v, want the job as enqueued", got)
	}
	out, err = ctl(t, s, "get", "1")
	if err != nil || !strings.Contains(out, "state:        scheduled") || !strings.Contains(out, `payload:      {"email":"ada@example.com"}`) {
		t.Fatalf("get = %q, %v; want a readable job", out, err)
	}

	out, err = ctl(t, s, "cancel", "--reason", "typo", "1")
	if err != nil || out != "job 1 is cancelled\n" {
		t.Fatalf("cancel = %q, %v", out, err)
	}
	if _, err := ctl(t, s, "get", "999"); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("get of a missing job = %v, want NotFound", err)
	}
}

func TestBadUsageSaysWhatIsWrong(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"get", "abc"}, `job id "abc": want a positive number`},
		{[]string{"enqueue", "q"}, "want QUEUE NAME [PAYLOAD]"},
		{[]string{"enqueue", "--backoff", "linear:1s", "q", "n"}, "want exponential:BASE[:MAX] or fixed:DELAY"},
		{[]string{"enqueue", "", "n"}, "InvalidArgument"},
		{[]string{"work"}, "want at least one QUEUE"},
	} {
		if _, err := ctl(t, s, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("queuectl %v = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

func TestWorkPrintsAndAcksJobs(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	for _, p := range []string{"one", "two", "three"} {
		if _, err := ctl(t, s, "enqueue", "q", "debug", p); err != nil {
			t.Fatalf("enqueue: %v", err)
		}
	}
	out, err := ctl(t, s, "work", "--max", "2", "--result", "seen", "q")
	if err != nil {
		t.Fatalf("work: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || lines[0] != "job 1 q/debug attempt 1/5 payload one" {
		t.Fatalf("work printed %q, want two job lines", out)
	}
	c, err := queued.Dial(context.Background(), s.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for id, want := range map[int64]queued.State{1: queued.StateCompleted, 2: queued.StateCompleted, 3: queued.StateAvailable} {
		j, err := c.GetJob(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.State != want || (want == queued.StateCompleted && string(j.Result) != "seen") || (want == queued.StateAvailable && j.Attempt != 0) {
			t.Errorf("job %d = %s attempt %d result %q, want %s", id, j.State, j.Attempt, j.Result, want)
		}
	}
	out, err = ctl(t, s, "work", "--json", "--max", "1", "--fail", "bad input", "--permanent", "q")
	if err != nil || !strings.Contains(out, `"id":3`) {
		t.Fatalf("work --json = %q, %v", out, err)
	}
	j, err := c.GetJob(context.Background(), 3)
	if err != nil || j.State != queued.StateFailed || j.Errors[0].Message != "bad input" {
		t.Fatalf("job 3 = %+v, %v; want failed with the given error", j, err)
	}
}

func TestFlowGetPrintsTheTree(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	c, err := queued.Dial(context.Background(), s.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f, err := c.EnqueueFlow(context.Background(), queued.NewFlow(queued.NewSpec("reports", "assemble", nil)).
		Child("sales", queued.NewFlow(queued.NewSpec("etl", "sum", nil)).
			Child("q1", queued.NewFlow(queued.NewSpec("etl", "extract", nil)))).
		Child("stock", queued.NewFlow(queued.NewSpec("etl", "extract", nil)), queued.IgnoreFailure))
	if err != nil {
		t.Fatalf("EnqueueFlow() = %v", err)
	}
	q1 := f.Root.Children[0].Children[0].Job.ID
	out, err := ctl(t, s, "flow", "get", fmt.Sprint(q1))
	if err != nil {
		t.Fatalf("flow get = %v", err)
	}
	want := fmt.Sprintf(`flow %d
%d assemble [reports] waiting_children (2 of 2 children pending)
├─ sales: %d sum [etl] waiting_children (1 of 1 children pending)
│  └─ q1: %d extract [etl] available
└─ stock: %d extract [etl] available (on failure: ignore)
`, f.ID, f.ID, f.Root.Children[0].Job.ID, q1, f.Root.Children[1].Job.ID)
	if out != want {
		t.Fatalf("flow get printed\n%s\nwant\n%s", out, want)
	}
	out, err = ctl(t, s, "--json", "flow", "get", fmt.Sprint(f.ID))
	if err != nil || !strings.Contains(out, `"child_name":"stock"`) {
		t.Fatalf("flow get --json = %v\n%s", err, out)
	}
}

func TestWatchPrintsAJobUntilItFinishes(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	out, err := ctl(t, s, "--json", "enqueue", "q", "n", `{"x":1}`)
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	var e queued.Enqueued
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		t.Fatalf("enqueue printed %q: %v", out, err)
	}
	id := strconv.FormatInt(e.ID, 10)
	if _, err := ctl(t, s, "cancel", id); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	// The job finished before the watch: it prints its state and returns.
	out, err = ctl(t, s, "watch", id)
	if err != nil || !strings.Contains(out, "current") || !strings.Contains(out, "state=cancelled") {
		t.Fatalf("watch = %q, %v; want the cancelled job's current state", out, err)
	}
	out, err = ctl(t, s, "--json", "watch", id)
	var ev struct {
		Kind string `json:"kind"`
		Job  struct {
			State string `json:"state"`
		} `json:"job"`
		Cursor string `json:"cursor"`
	}
	if err != nil || json.Unmarshal([]byte(out), &ev) != nil || ev.Kind != "current" || ev.Job.State != "cancelled" || ev.Cursor == "" {
		t.Fatalf("watch --json = %q, %v; want one JSON event", out, err)
	}
	if _, err := ctl(t, s, "watch", "--queue", "q", id); err == nil {
		t.Fatal("watch with both ids and --queue succeeded, want an error")
	}
}

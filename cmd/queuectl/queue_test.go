package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/queued-dev/queued/internal/queuedtest"
)

func TestQueueCommands(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	if _, err := ctl(t, s, "enqueue", "mail", "send", `{"to":"ada"}`); err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	out, err := ctl(t, s, "queue", "pause", "mail")
	if err != nil || !strings.Contains(out, "state:      paused") || !strings.Contains(out, "1 available") {
		t.Fatalf("queue pause = %q, %v", out, err)
	}
	if out, err = ctl(t, s, "queue", "limit", "mail", "20/500ms"); err != nil || !strings.Contains(out, "rate limit: 20/500ms") {
		t.Fatalf("queue limit = %q, %v", out, err)
	}
	if out, err = ctl(t, s, "queue", "limit", "api", "5/s"); err != nil || !strings.Contains(out, "rate limit: 5/1s") {
		t.Fatalf("queue limit 5/s = %q, %v", out, err)
	}

	out, err = ctl(t, s, "--json", "queue", "get", "mail")
	if err != nil {
		t.Fatalf("queue get: %v", err)
	}
	var got struct {
		Name      string `json:"name"`
		Paused    bool   `json:"paused"`
		RateLimit struct {
			Max int           `json:"max"`
			Per time.Duration `json:"per"`
		} `json:"rate_limit"`
		Counts struct {
			Available int64 `json:"available"`
		} `json:"counts"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("queue get printed %q: %v", out, err)
	}
	if got.Name != "mail" || !got.Paused || got.RateLimit.Max != 20 || got.RateLimit.Per != 500*time.Millisecond || got.Counts.Available != 1 {
		t.Fatalf("queue get = %+v", got)
	}

	if _, err := ctl(t, s, "queue", "resume", "mail"); err != nil {
		t.Fatalf("queue resume: %v", err)
	}
	if _, err := ctl(t, s, "queue", "limit", "mail", "off"); err != nil {
		t.Fatalf("queue limit off: %v", err)
	}
	out, err = ctl(t, s, "queue", "ls")
	if err != nil {
		t.Fatalf("queue ls: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "QUEUE") ||
		strings.Join(strings.Fields(lines[1]), " ") != "api running 5/1s 0 0 0 0" ||
		strings.Join(strings.Fields(lines[2]), " ") != "mail running - 1 0 0 0" {
		t.Fatalf("queue ls = %q", out)
	}

	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"queue", "limit", "mail", "20"}, "MAX/PER"},
		{[]string{"queue", "limit", "mail", "-1/s"}, "max"},
		{[]string{"queue", "limit", "mail", "5/0s"}, "per"},
		{[]string{"queue", "pause"}, "QUEUE"},
		{[]string{"queue", "drain", "mail"}, "unknown queue subcommand"},
	} {
		if _, err := ctl(t, s, bad.args...); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("queuectl %v = %v, want an error mentioning %q", bad.args, err, bad.want)
		}
	}
}

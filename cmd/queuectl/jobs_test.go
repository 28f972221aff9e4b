package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/queued-dev/queued/internal/queuedtest"
)

func TestJobsListRetryRemove(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	for range 3 {
		if _, err := ctl(t, s, "enqueue", "work", "task", "{}"); err != nil {
			t.Fatalf("enqueue: %v", err)
		}
	}
	if _, err := ctl(t, s, "cancel", "2"); err != nil {
		t.Fatalf("cancel: %v", err)
	}

	out, err := ctl(t, s, "jobs", "ls", "--queue", "work", "--limit", "2")
	if err != nil {
		t.Fatalf("jobs ls: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[1], "3 ") || !strings.HasPrefix(lines[2], "2 ") || !strings.Contains(lines[3], "--page ") {
		t.Fatalf("jobs ls printed:\n%s\nwant a header, jobs 3 and 2, and how to get more", out)
	}
	token := lines[3][strings.LastIndex(lines[3], " ")+1:]
	out, err = ctl(t, s, "--json", "jobs", "ls", "--queue", "work", "--limit", "2", "--page", token)
	if err != nil {
		t.Fatalf("jobs ls --page: %v", err)
	}
	var page struct {
		Jobs []struct {
			ID    int64  `json:"id"`
			State string `json:"state"`
		} `json:"jobs"`
		Next string `json:"next_page_token"`
	}
	if err := json.Unmarshal([]byte(out), &page); err != nil || len(page.Jobs) != 1 || page.Jobs[0].ID != 1 || page.Next != "" {
		t.Fatalf("second page = %s (%v), want job 1 and no more", out, err)
	}

	out, err = ctl(t, s, "jobs", "ls", "--all", "--state", "cancelled")
	if err != nil || strings.Count(out, "\n") != 2 || !strings.Contains(out, "cancelled") {
		t.Fatalf("jobs ls --state cancelled = %q, %v; want job 2 only", out, err)
	}

	// rm refuses an available job, deletes the cancelled one; retry
	// brings a cancelled job back.
	if _, err := ctl(t, s, "jobs", "rm", "1"); err == nil {
		t.Fatalf("jobs rm of an available job succeeded")
	}
	if out, err := ctl(t, s, "jobs", "retry", "2"); err != nil || !strings.Contains(out, "job 2 is available again") {
		t.Fatalf("jobs retry 2 = %q, %v", out, err)
	}
	if _, err := ctl(t, s, "cancel", "2"); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if out, err := ctl(t, s, "jobs", "rm", "2"); err != nil || !strings.Contains(out, "job 2 (cancelled) deleted") {
		t.Fatalf("jobs rm 2 = %q, %v", out, err)
	}
	if _, err := ctl(t, s, "get", "2"); err == nil {
		t.Fatalf("get of a deleted job succeeded")
	}
	if _, err := ctl(t, s, "jobs", "ls", "--state", "bogus"); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("jobs ls --state bogus = %v, want an error naming it", err)
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/queued-dev/queued/store/storetest"
)

// TestMain lets the test binary play the child roles (server, holder) that
// queuebench starts from its own executable.
func TestMain(m *testing.M) {
	if isRole, code := runRole(); isRole {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// TestSmoke runs every scenario at a tiny size against a real server and a
// fresh database, and checks that each run produced figures and passed its
// exactly-once check: every scenario with the Go SDK's worker, and those
// whose workers matter most with the raw one. It asserts no speed. S7's
// schedules fire every second ("* * * * * *") so that it waits seconds,
// not minutes.
func TestSmoke(t *testing.T) {
	s7 := []string{"-s7-schedules", "5", "-s7-spec", "* * * * * *", "-s7-ticks", "2", "-s7-flow-rate", "40", "-s7-duration", "1s"}
	t.Run("sdk", func(t *testing.T) {
		smoke(t, append([]string{
			"-worker", "sdk",
			"-scenarios", "S1,S2,S3,S4,S5,S6kill,S7",
			"-jobs", "600", "-duration", "1s", "-rates", "200,max", "-max-callers", "8",
			"-s4-rows", "1000", "-s4-due", "300",
			"-s5-duration", "4s", "-s5-hold", "2s", "-s6-leases", "50",
		}, s7...), map[string]int{"S1": 4, "S2": 4, "S3": 2, "S4": 3, "S5": 1, "S6": 1, "S7": 3})
	})
	t.Run("raw", func(t *testing.T) {
		smoke(t, append([]string{
			"-worker", "raw",
			"-scenarios", "S2,S3,S6kill,S7",
			"-jobs", "600", "-duration", "1s", "-rates", "200", "-s6-leases", "50",
		}, s7...), map[string]int{"S2": 4, "S3": 1, "S6": 1, "S7": 3})
	})
}

// smoke runs queuebench with args over a fresh database and checks every
// result line; want is the number of results per scenario.
func smoke(t *testing.T, args []string, want map[string]int) {
	dbURL := storetest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, append([]string{"-database-url", dbURL, "-max-conns", "8", "-stats-settle", "0", "-json"}, args...), &stdout, &stderr)
	if err != nil {
		t.Fatalf("run() = %v\nstderr:\n%s", err, stderr.String())
	}
	seen := map[string]int{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var r result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("output line %q is not a result: %v", sc.Text(), err)
		}
		seen[r.Scenario]++
		if r.Error != "" || !r.ExactlyOnce {
			t.Errorf("%s %s: error %q, exactly once %v, check %+v, extra %v", r.Scenario, r.Variant, r.Error, r.ExactlyOnce, r.Check, r.Extra)
		}
		if r.Jobs == 0 || r.JobsPerS <= 0 || r.Check.Enqueued == 0 || r.Check.WorkedOnce != r.Check.Enqueued {
			t.Errorf("%s %s: jobs %d at %.0f/s, check %+v; want every enqueued job worked", r.Scenario, r.Variant, r.Jobs, r.JobsPerS, r.Check)
		}
		if r.TableBytes == 0 || r.WALBytesPerJob <= 0 {
			t.Errorf("%s %s: table %d bytes, %.0f WAL bytes per job; want both measured", r.Scenario, r.Variant, r.TableBytes, r.WALBytesPerJob)
		}
		if r.Scenario != "S1" && r.Worker != args[1] {
			t.Errorf("%s %s: worker %q, want %q", r.Scenario, r.Variant, r.Worker, args[1])
		}
		if r.LatencyOf == "tick_to_start" {
			// 5 schedules, 2 ticks from the first tick they all have; one
			// created just before a tick adds an earlier tick of its own.
			if r.Check.Enqueued < 10 || r.Extra["ticks_fired"] == nil || r.P50 <= 0 {
				t.Errorf("S7 cron: check %+v, extra %v, p50 %.1f ms; want at least 10 jobs over 2 ticks and a jitter", r.Check, r.Extra, r.P50)
			}
		}
		if r.LatencyOf == "flow_enqueue_to_root_completed" && (r.Jobs%flowSize != 0 || r.P50 <= 0 || r.Extra["roots_completed"] == nil) {
			t.Errorf("S7 flows: %d jobs, p50 %.1f ms, extra %v; want whole flows and a latency", r.Jobs, r.P50, r.Extra)
		}
	}
	for s, n := range want {
		if seen[s] != n {
			t.Errorf("%s: %d results, want %d\nstderr:\n%s", s, seen[s], n, stderr.String())
		}
	}
}

// TestCheckFindsLostAndDuplicateJobs shows that the exactly-once verdict can
// fail: a job never received is lost, one received twice is a duplicate,
// one received without a committed enqueue is unexpected.
func TestCheckFindsLostAndDuplicateJobs(t *testing.T) {
	rec := newRecorder(5, 1, false)
	for seq := range uint64(4) {
		rec.markEnqueued(seq)
	}
	now := time.Now()
	rec.start(makePayload(0, now))
	rec.start(makePayload(1, now))
	rec.start(makePayload(1, now)) // duplicate
	rec.start(makePayload(2, now))
	// seq 3 enqueued, never received: lost
	rec.start(makePayload(4, now)) // never enqueued
	rec.start([]byte("not ours"))

	got := rec.check(5)
	want := check{Enqueued: 4, WorkedOnce: 3, Lost: 1, Duplicates: 1, Unexpected: 2}
	if got != want {
		t.Fatalf("check() = %+v, want %+v", got, want)
	}
	if got.ok() {
		t.Fatalf("check %+v is ok, want a failed check", got)
	}
	if n := rec.pending(5); n != 1 {
		t.Fatalf("pending() = %d, want 1 (seq 3)", n)
	}
	rec.start(makePayload(3, now))
	rec2 := rec.check(5)
	if rec2.Lost != 0 || rec2.WorkedOnce != 4 {
		t.Fatalf("after receiving seq 3: check() = %+v, want nothing lost", rec2)
	}
	if !strings.Contains(func() string {
		var b bytes.Buffer
		writeTable(&b, []result{{Scenario: "S1", Check: got}})
		return b.String()
	}(), "3/1/1 !") {
		t.Fatalf("the table does not flag a failed check")
	}
}

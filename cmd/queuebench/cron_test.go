package main

import (
	"context"
	"testing"
	"time"

	"github.com/queued-dev/queued/store/storetest"
)

// TestCronCheckFindsMissingAndDuplicateJobs shows that S7's cron verdict
// can fail: a tick without a job is lost, a second job for a tick and a
// second delivery of a job are duplicates, a job of a schedule the run did
// not create and a delivery of a job the table does not hold are
// unexpected. A tick past the window is allowed, once.
func TestCronCheckFindsMissingAndDuplicateJobs(t *testing.T) {
	pool := storetest.NewPool(t)
	ctx := context.Background()
	b := &bench{e: &env{pool: pool}}
	t1 := time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)
	t2, t3 := t1.Add(time.Minute), t1.Add(2*time.Minute)
	plan := cronPlan{first: map[string]time.Time{"a": t1, "b": t1}, ticks: []time.Time{t1, t2}, end: t2}
	rec := newCronRecorder()
	insert := func(schedule string, tick time.Time, deliveries int) {
		t.Helper()
		var id int64
		err := pool.QueryRow(ctx, `INSERT INTO queued_jobs (queue, name, state, max_attempts, run_at, created_at, metadata)
			VALUES ('q', 'tick', 'completed', 1, $1::timestamptz, $1::timestamptz + interval '5 ms',
			        jsonb_build_object('queued.schedule', $2::text, 'queued.tick', $3::text)) RETURNING id`,
			tick, schedule, tick.Format(time.RFC3339Nano)).Scan(&id)
		if err != nil {
			t.Fatal(err)
		}
		for range deliveries {
			rec.onJob(leasedJob{ID: id, Metadata: map[string]string{"queued.schedule": schedule, "queued.tick": tick.Format(time.RFC3339Nano)}})
		}
	}
	insert("a", t1, 1) // fine
	insert("a", t2, 1) // two jobs for one tick
	insert("a", t2, 1)
	// b at t1: no job
	insert("b", t2, 2)   // worked twice
	insert("a", t3, 1)   // past the window, before the deletes: fine
	insert("zzz", t1, 1) // not ours
	rec.onJob(leasedJob{ID: 1 << 40})

	var r result
	if err := b.analyseCron(ctx, &r, "q", plan, rec); err != nil {
		t.Fatal(err)
	}
	want := check{Enqueued: 4, WorkedOnce: 1, Lost: 1, Duplicates: 2, Unexpected: 2}
	if r.Check != want {
		t.Fatalf("check = %+v, want %+v", r.Check, want)
	}
	if r.Check.ok() {
		t.Fatalf("check %+v is ok, want a failed check", r.Check)
	}
	if r.Extra["jobs_after_window"] != 1 || r.Extra["ticks_fired"] != 2 {
		t.Fatalf("extra = %v, want 1 job after the window and 2 ticks fired", r.Extra)
	}
	if r.Extra["tick_to_enqueue_ms"] != "p50 5.0 p95 5.0 p99 5.0 max 5.0" {
		t.Fatalf("tick_to_enqueue_ms = %v, want 5 ms throughout", r.Extra["tick_to_enqueue_ms"])
	}
}

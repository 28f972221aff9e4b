package service_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/queued-dev/queued/service"
	"github.com/queued-dev/queued/store"
	"github.com/queued-dev/queued/store/storetest"
)

// BenchmarkFireDue1000 times one FireDue call that fires 1,000 schedules
// due at the same tick (S7's cron case), on a fresh database per op. The
// span of that call is the lateness of the tick's last job.
func BenchmarkFireDue1000(b *testing.B) {
	const schedules = 1000
	start := utc("2024-06-01T00:00:30Z")
	tick := utc("2024-06-01T00:01:00Z")
	for b.Loop() {
		b.StopTimer()
		ctx := context.Background()
		clk := &clock{t: start}
		st := store.New(storetest.NewPool(b))
		svc, err := service.New(st, service.Config{Now: clk.Now, ParseCron: parseCron})
		if err != nil {
			b.Fatal(err)
		}
		for i := range schedules {
			if _, err := svc.UpsertSchedule(ctx, service.Schedule{
				Name: fmt.Sprintf("s%04d", i), Spec: "* * * * *",
				Job: service.JobTemplate{Queue: "cron", Name: "tick", Payload: []byte("p")},
			}); err != nil {
				b.Fatal(err)
			}
		}
		clk.Set(tick)
		b.StartTimer()
		t0 := time.Now()
		if _, err := svc.FireDue(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(t0).Microseconds())/1000, "ms/fire")
		b.StopTimer()
		var n int
		if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM queued_jobs`).Scan(&n); err != nil {
			b.Fatal(err)
		}
		if n != schedules {
			b.Fatalf("fired %d jobs, want %d", n, schedules)
		}
		b.StartTimer()
	}
}

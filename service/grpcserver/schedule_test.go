package grpcserver_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	queuedv1 "github.com/queued-dev/queued/api/proto/queued/v1"
	"github.com/queued-dev/queued/internal/queuedtest"
)

func scheduleClient(s *queuedtest.Server) queuedv1.ScheduleServiceClient {
	return queuedv1.NewScheduleServiceClient(s.Conn)
}

func validSchedule(name string) *queuedv1.Schedule {
	return &queuedv1.Schedule{
		Name: name, Spec: "*/5 * * * *", TimeZone: "Europe/Berlin",
		Job: &queuedv1.ScheduleJobTemplate{Queue: "reports", Name: "build_report", Payload: []byte("{}")},
	}
}

func TestUpsertScheduleRefusesBadInputNamingTheField(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	c := scheduleClient(s)
	tests := []struct {
		name   string
		mutate func(*queuedv1.Schedule)
		field  string
	}{
		{"no name", func(p *queuedv1.Schedule) { p.Name = "" }, "name"},
		{"empty spec", func(p *queuedv1.Schedule) { p.Spec = "" }, "spec"},
		{"bad cron", func(p *queuedv1.Schedule) { p.Spec = "61 * * * *" }, "spec"},
		{"cron with a zone prefix", func(p *queuedv1.Schedule) { p.Spec = "CRON_TZ=UTC * * * * *" }, "spec"},
		{"bad interval", func(p *queuedv1.Schedule) { p.Spec = "every soon" }, "spec"},
		{"interval too short", func(p *queuedv1.Schedule) { p.Spec = "every 10ms" }, "spec"},
		{"never fires", func(p *queuedv1.Schedule) { p.Spec = "0 0 30 2 *" }, "spec"},
		{"unknown zone", func(p *queuedv1.Schedule) { p.TimeZone = "Mars/Olympus_Mons" }, "time_zone"},
		{"Local zone", func(p *queuedv1.Schedule) { p.TimeZone = "Local" }, "time_zone"},
		{"no template", func(p *queuedv1.Schedule) { p.Job = nil }, "job"},
		{"empty template", func(p *queuedv1.Schedule) { p.Job = &queuedv1.ScheduleJobTemplate{} }, "job.queue"},
		{"no job name", func(p *queuedv1.Schedule) { p.Job.Name = "" }, "job.name"},
		{"bad backoff", func(p *queuedv1.Schedule) { p.Job.Backoff = &queuedv1.Backoff{Kind: queuedv1.Backoff_KIND_FIXED} }, "job.backoff.base"},
		{"unknown catch-up", func(p *queuedv1.Schedule) { p.CatchUp = 42 }, "catch_up"},
		{"unknown overlap", func(p *queuedv1.Schedule) { p.Overlap = 42 }, "overlap"},
		{"window without all", func(p *queuedv1.Schedule) { p.CatchUpWindow = dur(time.Hour) }, "catch_up_window"},
		{"end before start", func(p *queuedv1.Schedule) {
			p.StartAt = timestamppb.New(time.Now().Add(2 * time.Hour))
			p.EndAt = timestamppb.New(time.Now().Add(time.Hour))
		}, "end_at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validSchedule("bad")
			tt.mutate(p)
			_, err := c.UpsertSchedule(context.Background(), &queuedv1.UpsertScheduleRequest{Schedule: p})
			wantCode(t, err, codes.InvalidArgument)
			if got := fieldOf(t, err); got != tt.field {
				t.Fatalf("field = %q (%v), want %q", got, err, tt.field)
			}
		})
	}
	list, err := c.ListSchedules(context.Background(), &queuedv1.ListSchedulesRequest{})
	if err != nil || len(list.GetSchedules()) != 0 {
		t.Fatalf("ListSchedules() = %v, %v; want none stored", list.GetSchedules(), err)
	}
}

func TestScheduleAPILifecycle(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	c := scheduleClient(s)
	ctx := context.Background()

	up, err := c.UpsertSchedule(ctx, &queuedv1.UpsertScheduleRequest{Schedule: validSchedule("report")})
	if err != nil {
		t.Fatalf("UpsertSchedule() = %v", err)
	}
	if up.GetSchedule().GetCatchUp() != queuedv1.Schedule_CATCH_UP_ONE || up.GetSchedule().GetOverlap() != queuedv1.Schedule_OVERLAP_ALLOW {
		t.Fatalf("defaults = %v/%v, want catch-up one, overlap allow", up.GetSchedule().GetCatchUp(), up.GetSchedule().GetOverlap())
	}
	// Idempotent by name: the same upsert again keeps the schedule and its next tick.
	again, err := c.UpsertSchedule(ctx, &queuedv1.UpsertScheduleRequest{Schedule: validSchedule("report")})
	if err != nil || !again.GetSchedule().GetNextFireAt().AsTime().Equal(up.GetSchedule().GetNextFireAt().AsTime()) {
		t.Fatalf("second UpsertSchedule() next = %v (%v), want %v", again.GetSchedule().GetNextFireAt(), err, up.GetSchedule().GetNextFireAt())
	}

	got, err := c.GetSchedule(ctx, &queuedv1.GetScheduleRequest{Name: "report", NextCount: 3})
	if err != nil {
		t.Fatalf("GetSchedule() = %v", err)
	}
	times := got.GetNextFireTimes()
	if len(times) != 3 {
		t.Fatalf("next fire times = %v, want 3", times)
	}
	for i, ts := range times {
		if ts.AsTime().Minute()%5 != 0 || ts.AsTime().Second() != 0 || (i > 0 && ts.AsTime().Sub(times[i-1].AsTime()) != 5*time.Minute) {
			t.Fatalf("next fire times = %v, want every 5 minutes on the minute", times)
		}
	}
	if !times[0].AsTime().Equal(got.GetSchedule().GetNextFireAt().AsTime()) {
		t.Fatalf("first next fire time %v != next_fire_at %v", times[0], got.GetSchedule().GetNextFireAt())
	}

	paused, err := c.PauseSchedule(ctx, &queuedv1.PauseScheduleRequest{Name: "report"})
	if err != nil || !paused.GetSchedule().GetPaused() || paused.GetSchedule().GetNextFireAt() != nil {
		t.Fatalf("PauseSchedule() = %v, %v; want paused with no next tick", paused.GetSchedule(), err)
	}
	resumed, err := c.ResumeSchedule(ctx, &queuedv1.ResumeScheduleRequest{Name: "report"})
	if err != nil || resumed.GetSchedule().GetPaused() || resumed.GetSchedule().GetNextFireAt() == nil {
		t.Fatalf("ResumeSchedule() = %v, %v; want active with a next tick", resumed.GetSchedule(), err)
	}

	trig, err := c.TriggerSchedule(ctx, &queuedv1.TriggerScheduleRequest{Name: "report"})
	if err != nil {
		t.Fatalf("TriggerSchedule() = %v", err)
	}
	job := getJob(t, s, trig.GetJobId())
	if job.GetQueue() != "reports" || job.GetName() != "build_report" || job.GetMetadata()["queued.schedule"] != "report" {
		t.Fatalf("triggered job = %v, want the template's job", job)
	}

	list, err := c.ListSchedules(ctx, &queuedv1.ListSchedulesRequest{})
	if err != nil || len(list.GetSchedules()) != 1 || list.GetSchedules()[0].GetLastJobId() != trig.GetJobId() {
		t.Fatalf("ListSchedules() = %v, %v", list.GetSchedules(), err)
	}
	if _, err := c.DeleteSchedule(ctx, &queuedv1.DeleteScheduleRequest{Name: "report"}); err != nil {
		t.Fatalf("DeleteSchedule() = %v", err)
	}
	for _, call := range []func() error{
		func() error { _, err := c.GetSchedule(ctx, &queuedv1.GetScheduleRequest{Name: "report"}); return err },
		func() error {
			_, err := c.PauseSchedule(ctx, &queuedv1.PauseScheduleRequest{Name: "report"})
			return err
		},
		func() error {
			_, err := c.ResumeSchedule(ctx, &queuedv1.ResumeScheduleRequest{Name: "report"})
			return err
		},
		func() error {
			_, err := c.DeleteSchedule(ctx, &queuedv1.DeleteScheduleRequest{Name: "report"})
			return err
		},
		func() error {
			_, err := c.TriggerSchedule(ctx, &queuedv1.TriggerScheduleRequest{Name: "report"})
			return err
		},
	} {
		wantCode(t, call(), codes.NotFound)
	}
	if getJob(t, s, trig.GetJobId()).GetState() != queuedv1.JobState_JOB_STATE_AVAILABLE {
		t.Fatal("deleting the schedule touched its job")
	}
}

// The real scheduler loop on the real clock, across two replicas: a
// schedule created through one replica fires through the loops, each tick
// once, and a worker receives the jobs.
func TestSchedulerLoopFiresAcrossReplicas(t *testing.T) {
	t.Parallel()
	a := queuedtest.Start(t)
	b := queuedtest.StartOn(t, a.DatabaseURL)
	p := validSchedule("fast")
	p.Spec = "every 1s"
	p.Job.Queue = "fast"
	if _, err := scheduleClient(b).UpsertSchedule(context.Background(), &queuedv1.UpsertScheduleRequest{Schedule: p}); err != nil {
		t.Fatalf("UpsertSchedule() = %v", err)
	}
	w := openWorker(t, a.Client, &queuedv1.LeaseOpen{Queues: []string{"fast"}, Window: 10})
	seen := map[string]bool{}
	for len(seen) < 3 {
		j := w.next(10 * time.Second)
		tick := j.GetJob().GetMetadata()["queued.tick"]
		if seen[tick] {
			t.Fatalf("tick %s delivered twice", tick)
		}
		seen[tick] = true
		w.ack(j, nil)
	}
	if _, err := scheduleClient(a).PauseSchedule(context.Background(), &queuedv1.PauseScheduleRequest{Name: "fast"}); err != nil {
		t.Fatalf("PauseSchedule() = %v", err)
	}
	var dups int
	if err := a.Pool().QueryRow(context.Background(), `SELECT count(*) FROM (SELECT metadata->>'queued.tick' FROM queued_jobs WHERE queue = 'fast' GROUP BY 1 HAVING count(*) > 1) d`).Scan(&dups); err != nil || dups != 0 {
		t.Fatalf("ticks enqueued more than once = %d (%v), want 0", dups, err)
	}
}

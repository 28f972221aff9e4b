package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/queued-dev/queued/internal/queuedtest"
)

func TestScheduleCommands(t *testing.T) {
	t.Parallel()
	s := queuedtest.Start(t)
	out, err := ctl(t, s, "schedule", "set", "--cron", "0 9 * * MON-FRI", "--tz", "Europe/Berlin", "--queue", "mail", "--job", "digest",
		"--payload", `{"kind":"daily"}`, "--catch-up", "all", "--catch-up-window", "2h", "--overlap", "skip", "--meta", "team=growth", "digest")
	if err != nil || !strings.HasPrefix(out, "schedule digest set; next tick ") {
		t.Fatalf("schedule set = %q, %v", out, err)
	}
	if _, err := ctl(t, s, "schedule", "set", "--cron", "61 * * * *", "--queue", "q", "--job", "j", "bad"); err == nil || !strings.Contains(err.Error(), "spec") {
		t.Fatalf("schedule set with a bad cron = %v, want an error naming spec", err)
	}
	if _, err := ctl(t, s, "schedule", "set", "--every", "15m", "--tz", "Nowhere/Town", "--queue", "q", "--job", "j", "bad"); err == nil || !strings.Contains(err.Error(), "time_zone") {
		t.Fatalf("schedule set with a bad zone = %v, want an error naming time_zone", err)
	}

	out, err = ctl(t, s, "--json", "schedule", "get", "--next", "3", "digest")
	if err != nil {
		t.Fatalf("schedule get: %v", err)
	}
	var got struct {
		Name          string        `json:"name"`
		TimeZone      string        `json:"time_zone"`
		CatchUp       string        `json:"catch_up"`
		CatchUpWindow time.Duration `json:"catch_up_window"`
		Overlap       string        `json:"overlap"`
		Job           struct {
			Queue    string            `json:"queue"`
			Metadata map[string]string `json:"metadata"`
		} `json:"job"`
		NextFireTimes []time.Time `json:"next_fire_times"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("schedule get printed %q: %v", out, err)
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	if got.Name != "digest" || got.TimeZone != "Europe/Berlin" || got.CatchUp != "all" || got.CatchUpWindow != 2*time.Hour ||
		got.Overlap != "skip" || got.Job.Queue != "mail" || got.Job.Metadata["team"] != "growth" || len(got.NextFireTimes) != 3 {
		t.Fatalf("schedule get = %+v", got)
	}
	for _, ft := range got.NextFireTimes {
		local := ft.In(berlin)
		if local.Hour() != 9 || local.Minute() != 0 || local.Weekday() == time.Saturday || local.Weekday() == time.Sunday {
			t.Fatalf("next fire time %v is not 09:00 on a weekday in Berlin", local)
		}
	}

	if out, err = ctl(t, s, "schedule", "pause", "digest"); err != nil || out != "schedule digest is paused\n" {
		t.Fatalf("schedule pause = %q, %v", out, err)
	}
	if out, err = ctl(t, s, "schedule", "ls"); err != nil || !strings.Contains(out, "digest") || !strings.Contains(out, "paused") {
		t.Fatalf("schedule ls = %q, %v", out, err)
	}
	if out, err = ctl(t, s, "schedule", "resume", "digest"); err != nil || !strings.HasPrefix(out, "schedule digest is active") {
		t.Fatalf("schedule resume = %q, %v", out, err)
	}
	out, err = ctl(t, s, "schedule", "trigger", "digest")
	if err != nil || !strings.HasPrefix(out, "enqueued job ") {
		t.Fatalf("schedule trigger = %q, %v", out, err)
	}
	id := strings.TrimSpace(strings.TrimPrefix(out, "enqueued job "))
	if out, err = ctl(t, s, "get", id); err != nil || !strings.Contains(out, "mail") || !strings.Contains(out, "queued.schedule=digest") {
		t.Fatalf("get triggered job = %q, %v", out, err)
	}
	if out, err = ctl(t, s, "schedule", "rm", "digest"); err != nil || out != "schedule digest deleted\n" {
		t.Fatalf("schedule rm = %q, %v", out, err)
	}
	if _, err = ctl(t, s, "schedule", "get", "digest"); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("schedule get after rm = %v, want NotFound", err)
	}
}

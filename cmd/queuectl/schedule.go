package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	queued "github.com/queued-dev/queued/clients/go"
)

func init() {
	register(&command{
		name:    "schedule",
		args:    "set|ls|get|pause|resume|rm|trigger [flags] [NAME]",
		summary: "manage repeating jobs (cron or fixed interval)",
		setup:   setupSchedule,
	})
}

// scheduleSubcommands maps each subcommand to its usage line and setup.
var scheduleSubcommands = map[string]subcommand{
	"set": {"NAME (with --cron or --every, --queue and --job)", setupScheduleSet},
	"ls":  {"", setupScheduleList},
	"get": {"NAME", setupScheduleGet},
	"pause": {"NAME", nameOnly(func(ctx context.Context, c *queued.Client, name string) (*queued.Schedule, error) {
		return c.PauseSchedule(ctx, name)
	})},
	"resume": {"NAME", nameOnly(func(ctx context.Context, c *queued.Client, name string) (*queued.Schedule, error) {
		return c.ResumeSchedule(ctx, name)
	})},
	"rm":      {"NAME", setupScheduleRemove},
	"trigger": {"NAME", setupScheduleTrigger},
}

func setupSchedule(_ *flag.FlagSet, e *env) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		return runSubcommand(ctx, e, "schedule", scheduleSubcommands, args)
	}
}

func setupScheduleSet(fs *flag.FlagSet, e *env) func(context.Context, *queued.Client, []string) error {
	var (
		cron          = fs.String("cron", "", `cron expression, e.g. "0 9 * * MON-FRI" or @hourly`)
		every         = fs.Duration("every", 0, "fixed interval instead of --cron, e.g. 15m")
		tz            = fs.String("tz", "", "IANA time zone the cron fields are read in (default UTC)")
		queue         = fs.String("queue", "", "queue of the enqueued jobs")
		job           = fs.String("job", "", "name (type) of the enqueued jobs")
		payload       = fs.String("payload", "", "payload of the enqueued jobs")
		priority      = fs.Int("priority", 0, "lower runs first")
		attempts      = fs.Int("attempts", 0, "attempts before a job fails (0: server default)")
		backoff       = fs.String("backoff", "", "exponential:BASE[:MAX] or fixed:DELAY")
		catchUp       = fs.String("catch-up", "", "missed ticks after downtime: skip, one (default) or all")
		catchUpWindow = fs.Duration("catch-up-window", 0, "with --catch-up all: how far back missed ticks still fire (default 24h)")
		overlap       = fs.String("overlap", "", "allow (default), or skip a tick while the previous job is unfinished")
		start         = fs.String("start", "", "no tick before this RFC 3339 time")
		end           = fs.String("end", "", "no tick after this RFC 3339 time")
		paused        = fs.Bool("paused", false, "create or leave the schedule paused")
		meta          = metaFlag{}
	)
	fs.Var(meta, "meta", "metadata key=value of the enqueued jobs (repeatable)")
	return func(ctx context.Context, c *queued.Client, args []string) error {
		if err := wantArgs(args, 1, 1, "NAME"); err != nil {
			return err
		}
		s := queued.Schedule{
			Name: args[0], TimeZone: *tz, Paused: *paused,
			Job: queued.ScheduleJob{
				Queue: *queue, Name: *job, Payload: []byte(*payload), Metadata: meta,
				Priority: int32(*priority), MaxAttempts: int32(*attempts),
			},
			CatchUp: queued.CatchUp(*catchUp), CatchUpWindow: *catchUpWindow, Overlap: queued.Overlap(*overlap),
		}
		switch {
		case *cron != "" && *every != 0:
			return fmt.Errorf("give --cron or --every, not both")
		case *cron != "":
			s.Spec = *cron
		case *every != 0:
			s.Spec = "every " + every.String()
		default:
			return fmt.Errorf("give --cron EXPR or --every DURATION")
		}
		if *backoff != "" {
			b, err := queued.ParseBackoff(*backoff)
			if err != nil {
				return fmt.Errorf("--backoff: %w", err)
			}
			s.Job.Backoff = b
		}
		for _, f := range []struct {
			flag, v string
			out     *time.Time
		}{{"--start", *start, &s.StartAt}, {"--end", *end, &s.EndAt}} {
			if f.v == "" {
				continue
			}
			t, err := time.Parse(time.RFC3339, f.v)
			if err != nil {
				return fmt.Errorf("%s: %w", f.flag, err)
			}
			*f.out = t
		}
		out, err := c.UpsertSchedule(ctx, s)
		if err != nil {
			return err
		}
		if e.json {
			return printJSON(e.stdout, scheduleView{Schedule: out})
		}
		fmt.Fprintf(e.stdout, "schedule %s set; next tick %s\n", out.Name, stamp(out.NextFireAt))
		return nil
	}
}

func setupScheduleList(_ *flag.FlagSet, e *env) func(context.Context, *queued.Client, []string) error {
	return func(ctx context.Context, c *queued.Client, args []string) error {
		if err := wantArgs(args, 0, 0, "no arguments"); err != nil {
			return err
		}
		all, err := c.ListSchedules(ctx)
		if err != nil {
			return err
		}
		if e.json {
			views := make([]scheduleView, len(all))
			for i, s := range all {
				views[i] = scheduleView{Schedule: s}
			}
			return printJSON(e.stdout, views)
		}
		fmt.Fprintf(e.stdout, "%-24s %-24s %-16s %-20s %-7s %s\n", "NAME", "SPEC", "ZONE", "QUEUE/JOB", "STATE", "NEXT")
		for _, s := range all {
			state := "active"
			if s.Paused {
				state = "paused"
			}
			fmt.Fprintf(e.stdout, "%-24s %-24s %-16s %-20s %-7s %s\n", s.Name, s.Spec, s.TimeZone, s.Job.Queue+"/"+s.Job.Name, state, stamp(s.NextFireAt))
		}
		return nil
	}
}

func setupScheduleGet(fs *flag.FlagSet, e *env) func(context.Context, *queued.Client, []string) error {
	next := fs.Int("next", 5, "how many upcoming fire times to show (at most 100)")
	return func(ctx context.Context, c *queued.Client, args []string) error {
		if err := wantArgs(args, 1, 1, "NAME"); err != nil {
			return err
		}
		s, times, err := c.GetSchedule(ctx, args[0], *next)
		if err != nil {
			return err
		}
		if e.json {
			return printJSON(e.stdout, scheduleView{Schedule: s, NextFireTimes: times})
		}
		printSchedule(e.stdout, s, times)
		return nil
	}
}

func nameOnly(call func(context.Context, *queued.Client, string) (*queued.Schedule, error)) func(*flag.FlagSet, *env) func(context.Context, *queued.Client, []string) error {
	return func(_ *flag.FlagSet, e *env) func(context.Context, *queued.Client, []string) error {
		return func(ctx context.Context, c *queued.Client, args []string) error {
			if err := wantArgs(args, 1, 1, "NAME"); err != nil {
				return err
			}
			s, err := call(ctx, c, args[0])
			if err != nil {
				return err
			}
			if e.json {
				return printJSON(e.stdout, scheduleView{Schedule: s})
			}
			state := "active, next tick " + stamp(s.NextFireAt)
			if s.Paused {
				state = "paused"
			}
			fmt.Fprintf(e.stdout, "schedule %s is %s\n", s.Name, state)
			return nil
		}
	}
}

func setupScheduleRemove(_ *flag.FlagSet, e *env) func(context.Context, *queued.Client, []string) error {
	return func(ctx context.Context, c *queued.Client, args []string) error {
		if err := wantArgs(args, 1, 1, "NAME"); err != nil {
			return err
		}
		if err := c.DeleteSchedule(ctx, args[0]); err != nil {
			return err
		}
		if e.json {
			return printJSON(e.stdout, map[string]string{"deleted": args[0]})
		}
		fmt.Fprintf(e.stdout, "schedule %s deleted\n", args[0])
		return nil
	}
}

func setupScheduleTrigger(_ *flag.FlagSet, e *env) func(context.Context, *queued.Client, []string) error {
	return func(ctx context.Context, c *queued.Client, args []string) error {
		if err := wantArgs(args, 1, 1, "NAME"); err != nil {
			return err
		}
		id, err := c.TriggerSchedule(ctx, args[0])
		if err != nil {
			return err
		}
		if e.json {
			return printJSON(e.stdout, map[string]int64{"job_id": id})
		}
		fmt.Fprintf(e.stdout, "enqueued job %d\n", id)
		return nil
	}
}

// scheduleView is a schedule as queuectl prints it in JSON.
type scheduleView struct {
	*queued.Schedule
	NextFireTimes []time.Time `json:"next_fire_times,omitempty"`
}

func printSchedule(w io.Writer, s *queued.Schedule, next []time.Time) {
	line := func(k, v string) { fmt.Fprintf(w, "%-13s %s\n", k+":", v) }
	line("name", s.Name)
	line("spec", s.Spec)
	line("time zone", s.TimeZone)
	line("job", fmt.Sprintf("%s/%s", s.Job.Queue, s.Job.Name))
	line("payload", blob(s.Job.Payload).String())
	line("catch-up", string(s.CatchUp))
	if s.CatchUpWindow > 0 {
		line("window", s.CatchUpWindow.String())
	}
	line("overlap", string(s.Overlap))
	if !s.StartAt.IsZero() {
		line("start", stamp(s.StartAt))
	}
	if !s.EndAt.IsZero() {
		line("end", stamp(s.EndAt))
	}
	state := "active"
	if s.Paused {
		state = "paused"
	}
	line("state", state)
	line("last tick", stamp(s.LastFireAt))
	if s.LastJobID > 0 {
		line("last job", fmt.Sprint(s.LastJobID))
	}
	for i, t := range next {
		line(fmt.Sprintf("next #%d", i+1), stamp(t))
	}
}

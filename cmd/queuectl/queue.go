package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	queued "github.com/queued-dev/queued/clients/go"
)

func init() {
	register(&command{
		name:    "queue",
		args:    "pause|resume|limit|get|ls [flags] [QUEUE] [MAX/PER|off]",
		summary: "pause, resume and rate-limit queues; show their counts",
		setup:   setupQueue,
	})
}

// queueSubcommands maps each subcommand to its usage line and what it
// does with its arguments.
var queueSubcommands = map[string]struct {
	usage string
	min   int
	max   int
	run   func(ctx context.Context, c *queued.Client, args []string) ([]*queued.Queue, error)
}{
	"pause": {"QUEUE", 1, 1, func(ctx context.Context, c *queued.Client, args []string) ([]*queued.Queue, error) {
		return one(c.PauseQueue(ctx, args[0]))
	}},
	"resume": {"QUEUE", 1, 1, func(ctx context.Context, c *queued.Client, args []string) ([]*queued.Queue, error) {
		return one(c.ResumeQueue(ctx, args[0]))
	}},
	"limit": {"QUEUE MAX/PER (e.g. 20/500ms, 100/1m) or QUEUE off", 2, 2, func(ctx context.Context, c *queued.Client, args []string) ([]*queued.Queue, error) {
		if args[1] == "off" {
			return one(c.ClearRateLimit(ctx, args[0]))
		}
		max, per, err := parseRate(args[1])
		if err != nil {
			return nil, err
		}
		return one(c.SetRateLimit(ctx, args[0], max, per))
	}},
	"get": {"QUEUE", 1, 1, func(ctx context.Context, c *queued.Client, args []string) ([]*queued.Queue, error) {
		return one(c.GetQueue(ctx, args[0]))
	}},
	"ls": {"", 0, 0, func(ctx context.Context, c *queued.Client, _ []string) ([]*queued.Queue, error) {
		return c.ListQueueSettings(ctx)
	}},
}

func one(q *queued.Queue, err error) ([]*queued.Queue, error) {
	if err != nil {
		return nil, err
	}
	return []*queued.Queue{q}, nil
}

// parseRate reads MAX/PER: "20/500ms", "100/1m", or "5/s" (a bare unit
// means one of it).
func parseRate(s string) (int, time.Duration, error) {
	maxText, perText, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("rate %q: want MAX/PER, e.g. 20/500ms, or off", s)
	}
	max, err := strconv.Atoi(maxText)
	if err != nil {
		return 0, 0, fmt.Errorf("rate %q: MAX: %w", s, err)
	}
	if perText != "" && (perText[0] < '0' || perText[0] > '9') {
		perText = "1" + perText
	}
	per, err := time.ParseDuration(perText)
	if err != nil {
		return 0, 0, fmt.Errorf("rate %q: PER: %w", s, err)
	}
	return max, per, nil
}

func setupQueue(_ *flag.FlagSet, e *env) func(context.Context, []string) error {
	table := make(map[string]subcommand, len(queueSubcommands))
	for verb, sub := range queueSubcommands {
		usage := sub.usage
		if usage == "" {
			usage = "no arguments"
		}
		table[verb] = subcommand{usage: sub.usage, setup: func(*flag.FlagSet, *env) func(context.Context, *queued.Client, []string) error {
			return func(ctx context.Context, c *queued.Client, args []string) error {
				if err := wantArgs(args, sub.min, sub.max, usage); err != nil {
					return err
				}
				qs, err := sub.run(ctx, c, args)
				if err != nil {
					return err
				}
				switch {
				case e.json && verb == "ls":
					return printJSON(e.stdout, qs)
				case e.json:
					return printJSON(e.stdout, qs[0])
				case verb == "ls":
					printQueueTable(e.stdout, qs)
				default:
					printQueue(e.stdout, qs[0])
				}
				return nil
			}
		}}
	}
	return func(ctx context.Context, args []string) error {
		return runSubcommand(ctx, e, "queue", table, args)
	}
}

func queueState(q *queued.Queue) string {
	if q.Paused {
		return "paused"
	}
	return "running"
}

func rateText(r *queued.RateLimit) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%d/%v", r.Max, r.Per)
}

func printQueue(w io.Writer, q *queued.Queue) {
	line := func(k, v string) { fmt.Fprintf(w, "%-11s %s\n", k+":", v) }
	line("queue", q.Name)
	line("state", queueState(q))
	line("rate limit", rateText(q.RateLimit))
	line("jobs", fmt.Sprintf("%d available, %d scheduled, %d running, %d waiting for children",
		q.Counts.Available, q.Counts.Scheduled, q.Counts.Running, q.Counts.WaitingChildren))
}

func printQueueTable(w io.Writer, qs []*queued.Queue) {
	fmt.Fprintf(w, "%-24s %-8s %-12s %9s %9s %9s %9s\n", "QUEUE", "STATE", "LIMIT", "AVAILABLE", "SCHEDULED", "RUNNING", "WAITING")
	for _, q := range qs {
		fmt.Fprintf(w, "%-24s %-8s %-12s %9d %9d %9d %9d\n", q.Name, queueState(q), rateText(q.RateLimit),
			q.Counts.Available, q.Counts.Scheduled, q.Counts.Running, q.Counts.WaitingChildren)
	}
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	queued "github.com/queued-dev/queued/clients/go"
)

func init() {
	register(&command{
		name:    "watch",
		args:    "[JOB_ID...]",
		summary: "follow jobs (by id, until they finish) or a queue (--queue, until interrupted)",
		setup:   setupWatch,
	})
}

// watchView is an event as queuectl prints it in JSON.
type watchView struct {
	Kind   queued.EventKind     `json:"kind"`
	Job    *jobView             `json:"job,omitempty"`
	Error  *queued.AttemptError `json:"error,omitempty"`
	Cursor string               `json:"cursor"`
}

func setupWatch(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	queue := fs.String("queue", "", "watch every job of this queue")
	names := fs.String("names", "", "with --queue: only these job names, comma-separated")
	kinds := fs.String("kinds", "", "only these event kinds, comma-separated (e.g. completed,failed,cancelled)")
	cursor := fs.String("cursor", "", "resume after this cursor (from an earlier event)")
	checkpoints := fs.Bool("checkpoints", false, "also print checkpoints (cursor only)")
	return func(ctx context.Context, args []string) error {
		f := queued.WatchFilter{Queue: *queue, Cursor: *cursor}
		for _, a := range args {
			id, err := parseID(a)
			if err != nil {
				return err
			}
			f.JobIDs = append(f.JobIDs, id)
		}
		if (len(f.JobIDs) == 0) == (f.Queue == "") {
			return errors.New("name job ids or --queue, not both")
		}
		if *names != "" {
			f.Names = strings.Split(*names, ",")
		}
		if *kinds != "" {
			for _, k := range strings.Split(*kinds, ",") {
				f.Kinds = append(f.Kinds, queued.EventKind(k))
			}
		}
		c, err := e.dial(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		open := map[int64]bool{}
		for _, id := range f.JobIDs {
			open[id] = true
		}
		for ev, err := range c.Watch(ctx, f) {
			if err != nil {
				return err
			}
			if ev.Kind != queued.EventCheckpoint || *checkpoints {
				if err := printEvent(e, ev); err != nil {
					return err
				}
			}
			if ev.Job != nil && ev.Job.State.Finished() {
				delete(open, ev.Job.ID)
				if len(f.JobIDs) > 0 && len(open) == 0 {
					return nil
				}
			}
		}
		if ctx.Err() != nil && len(f.JobIDs) == 0 {
			return nil // interrupted: the normal end of a queue watch
		}
		return ctx.Err()
	}
}

func printEvent(e *env, ev queued.WatchEvent) error {
	if e.json {
		v := watchView{Kind: ev.Kind, Error: ev.Error, Cursor: ev.Cursor}
		if ev.Job != nil {
			jv := viewOf(ev.Job)
			v.Job = &jv
		}
		return printJSON(e.stdout, v)
	}
	now := time.Now().Local().Format("15:04:05.000")
	if ev.Job == nil {
		_, err := fmt.Fprintf(e.stdout, "%s %-16s cursor=%s\n", now, ev.Kind, ev.Cursor)
		return err
	}
	j := ev.Job
	line := fmt.Sprintf("%s %-16s job=%d queue=%s name=%s state=%s attempt=%d/%d", now, ev.Kind, j.ID, j.Queue, j.Name, j.State, j.Attempt, j.MaxAttempts)
	switch {
	case ev.Kind == queued.EventProgress:
		line += " progress=" + blob(j.LastProgress).String()
	case len(j.Result) > 0:
		line += " result=" + blob(j.Result).String()
	}
	if ev.Error != nil {
		first, _, _ := strings.Cut(ev.Error.Message, "\n")
		line += fmt.Sprintf(" error=%q", first)
	}
	if ev.Kind == queued.EventRetryScheduled {
		line += " next_run=" + stamp(j.RunAt)
	}
	_, err := fmt.Fprintln(e.stdout, line)
	return err
}

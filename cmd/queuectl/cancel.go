package main

import (
	"context"
	"flag"
	"fmt"
)

func init() {
	register(&command{
		name:    "cancel",
		args:    "JOB_ID",
		summary: "cancel an unfinished job (a worker running it is told to stop)",
		setup:   setupCancel,
	})
}

func setupCancel(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	reason := fs.String("reason", "cancelled with queuectl", "why, recorded on the job")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, 1, "JOB_ID"); err != nil {
			return err
		}
		id, err := parseID(args[0])
		if err != nil {
			return err
		}
		c, err := e.dial(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		j, err := c.CancelJob(ctx, id, *reason)
		if err != nil {
			return err
		}
		if e.json {
			return printJSON(e.stdout, viewOf(j))
		}
		fmt.Fprintf(e.stdout, "job %d is %s\n", j.ID, j.State)
		return nil
	}
}

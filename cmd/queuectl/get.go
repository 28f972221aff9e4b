package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
)

func init() {
	register(&command{
		name:    "get",
		args:    "JOB_ID",
		summary: "show a job: state, attempts, payload, result, errors",
		setup:   setupGet,
	})
}

func setupGet(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
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
		j, err := c.GetJob(ctx, id)
		if err != nil {
			return err
		}
		if e.json {
			return printJSON(e.stdout, viewOf(j))
		}
		printJob(e.stdout, j)
		return nil
	}
}

func parseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("job id %q: want a positive number", s)
	}
	return id, nil
}

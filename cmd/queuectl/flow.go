package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	queued "github.com/queued-dev/queued/clients/go"
)

func init() {
	register(&command{
		name:    "flow",
		args:    "get JOB_ID",
		summary: "show the flow (tree of jobs) a job belongs to, with states",
		setup:   setupFlow,
	})
}

func setupFlow(_ *flag.FlagSet, e *env) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if len(args) == 0 || args[0] != "get" {
			return fmt.Errorf("want a subcommand: get")
		}
		if err := wantArgs(args[1:], 1, 1, "JOB_ID"); err != nil {
			return err
		}
		id, err := parseID(args[1])
		if err != nil {
			return err
		}
		c, err := e.dial(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		f, err := c.GetFlow(ctx, id)
		if err != nil {
			return err
		}
		if e.json {
			return printJSON(e.stdout, f)
		}
		fmt.Fprintf(e.stdout, "flow %d\n", f.ID)
		printFlowJob(e.stdout, f.Root, "", "")
		return nil
	}
}

// printFlowJob prints one line per job, indented as a tree:
//
//	12 assemble [reports] completed result=...
//	├─ sales: 13 sum [etl] completed
//	│  └─ q1: 14 extract [etl] failed: boom (ignore)
func printFlowJob(w io.Writer, fj *queued.FlowJob, prefix, childPrefix string) {
	j := fj.Job
	var b strings.Builder
	fmt.Fprintf(&b, "%s", prefix)
	if fj.Name != "" {
		fmt.Fprintf(&b, "%s: ", fj.Name)
	}
	fmt.Fprintf(&b, "%d %s [%s] %s", j.ID, j.Name, j.Queue, j.State)
	if j.State == queued.StateWaitingChildren {
		fmt.Fprintf(&b, " (%d of %d children pending", fj.PendingChildren, len(fj.Children))
		if !fj.ChildrenDeadline.IsZero() {
			fmt.Fprintf(&b, ", deadline %s", stamp(fj.ChildrenDeadline))
		}
		b.WriteString(")")
	}
	if len(j.Errors) > 0 && (j.State == queued.StateFailed || j.State == queued.StateCancelled) {
		first, _, _ := strings.Cut(j.Errors[len(j.Errors)-1].Message, "\n")
		fmt.Fprintf(&b, ": %s", first)
	}
	if len(j.Result) > 0 {
		fmt.Fprintf(&b, " result=%s", blob(j.Result).String())
	}
	if fj.OnFailure != "" && fj.OnFailure != queued.FailParent {
		fmt.Fprintf(&b, " (on failure: %s)", fj.OnFailure)
	}
	fmt.Fprintln(w, b.String())
	for i, c := range fj.Children {
		branch, next := "├─ ", "│  "
		if i == len(fj.Children)-1 {
			branch, next = "└─ ", "   "
		}
		printFlowJob(w, c, childPrefix+branch, childPrefix+next)
	}
}

package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	queued "github.com/queued-dev/queued/clients/go"
)

func init() {
	register(&command{
		name:    "jobs",
		args:    "ls|retry|rm [flags] [JOB_ID...]",
		summary: "list jobs, retry failed or cancelled ones, delete finished ones",
		setup:   setupJobs,
	})
}

// jobsSubcommands maps each subcommand to its usage line and setup.
var jobsSubcommands = map[string]subcommand{
	"ls":    {"[--queue Q] [--state S[,S]] [--name N] [--oldest] [--limit N] [--all] [--page TOKEN]", setupJobsList},
	"retry": {"JOB_ID...", setupJobsRetry},
	"rm":    {"JOB_ID...", setupJobsRemove},
}

func setupJobs(_ *flag.FlagSet, e *env) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		return runSubcommand(ctx, e, "jobs", jobsSubcommands, args)
	}
}

func setupJobsList(fs *flag.FlagSet, e *env) func(context.Context, *queued.Client, []string) error {
	var (
		queue   = fs.String("queue", "", "only this queue")
		states  = fs.String("state", "", "only these states, comma-separated (e.g. failed,cancelled)")
		name    = fs.String("name", "", "only jobs with this name")
		oldest  = fs.Bool("oldest", false, "oldest first (default newest first)")
		limit   = fs.Int("limit", 50, "jobs per page, 1..500")
		all     = fs.Bool("all", false, "follow every page instead of printing one")
		page    = fs.String("page", "", "continue from a previous listing's next-page token")
		payload = fs.Bool("payload", false, "include payloads and results (with --json)")
	)
	return func(ctx context.Context, c *queued.Client, args []string) error {
		if err := wantArgs(args, 0, 0, "no arguments"); err != nil {
			return err
		}
		f := queued.JobFilter{Queue: *queue, Name: *name, OldestFirst: *oldest, Limit: *limit, IncludePayload: *payload}
		if *states != "" {
			for _, s := range strings.Split(*states, ",") {
				f.States = append(f.States, queued.State(strings.TrimSpace(s)))
			}
		}
		var jobs []*queued.Job
		next := ""
		if *all {
			for j, err := range c.AllJobs(ctx, f) {
				if err != nil {
					return err
				}
				jobs = append(jobs, j)
			}
		} else {
			p, err := c.ListJobs(ctx, f, *page)
			if err != nil {
				return err
			}
			jobs, next = p.Jobs, p.NextPageToken
		}
		if e.json {
			views := make([]jobView, len(jobs))
			for i, j := range jobs {
				views[i] = viewOf(j)
			}
			return printJSON(e.stdout, struct {
				Jobs          []jobView `json:"jobs"`
				NextPageToken string    `json:"next_page_token,omitempty"`
			}{views, next})
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tQUEUE\tNAME\tSTATE\tATTEMPT\tCREATED\tLAST ERROR")
		for _, j := range jobs {
			last := ""
			if len(j.Errors) > 0 {
				last = oneLine(j.Errors[len(j.Errors)-1].Message, 60)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", j.ID, j.Queue, j.Name, j.State, j.Attempt, j.MaxAttempts, stamp(j.CreatedAt), last)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if next != "" {
			fmt.Fprintf(e.stdout, "more: queuectl jobs ls (same flags) --page %s\n", next)
		}
		return nil
	}
}

// oneLine shortens s to n runes on one line, for a table cell.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func setupJobsRetry(_ *flag.FlagSet, e *env) func(context.Context, *queued.Client, []string) error {
	return forEachID(e, func(ctx context.Context, c *queued.Client, id int64) (any, string, error) {
		j, err := c.RetryJob(ctx, id)
		if err != nil {
			return nil, "", err
		}
		return viewOf(j), fmt.Sprintf("job %d is %s again (attempt 0 of %d)", j.ID, j.State, j.MaxAttempts), nil
	})
}

func setupJobsRemove(_ *flag.FlagSet, e *env) func(context.Context, *queued.Client, []string) error {
	return forEachID(e, func(ctx context.Context, c *queued.Client, id int64) (any, string, error) {
		st, err := c.DeleteJob(ctx, id)
		if err != nil {
			return nil, "", err
		}
		return map[string]any{"id": id, "deleted": true, "state": st}, fmt.Sprintf("job %d (%s) deleted", id, st), nil
	})
}

// forEachID runs do for every JOB_ID argument, printing each outcome, and
// goes on past a refused job so one bad id does not stop a batch; the
// command fails if any did.
func forEachID(e *env, do func(ctx context.Context, c *queued.Client, id int64) (view any, text string, err error)) func(context.Context, *queued.Client, []string) error {
	return func(ctx context.Context, c *queued.Client, args []string) error {
		if len(args) == 0 {
			return fmt.Errorf("want one or more JOB_IDs")
		}
		ids := make([]int64, len(args))
		for i, a := range args {
			id, err := parseID(a)
			if err != nil {
				return err
			}
			ids[i] = id
		}
		failed := 0
		for _, id := range ids {
			view, text, err := do(ctx, c, id)
			if err != nil {
				failed++
				fmt.Fprintf(e.stderr, "queuectl: %v\n", err)
				continue
			}
			if e.json {
				if err := printJSON(e.stdout, view); err != nil {
					return err
				}
			} else {
				fmt.Fprintln(e.stdout, text)
			}
		}
		if failed > 0 {
			return fmt.Errorf("%d of %d jobs refused", failed, len(ids))
		}
		return nil
	}
}

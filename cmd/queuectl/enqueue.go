package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	queued "github.com/queued-dev/queued/clients/go"
)

func init() {
	register(&command{
		name:    "enqueue",
		args:    "QUEUE NAME [PAYLOAD | -]",
		summary: "add a job (PAYLOAD '-' reads standard input)",
		setup:   setupEnqueue,
	})
}

// metaFlag collects repeated --meta key=value flags.
type metaFlag map[string]string

func (m metaFlag) String() string { return fmt.Sprint(map[string]string(m)) }
func (m metaFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", v)
	}
	m[k] = val
	return nil
}

func setupEnqueue(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	var (
		priority    = fs.Int("priority", 0, "lower runs first")
		delay       = fs.Duration("delay", 0, "run no earlier than this from now, e.g. 30s")
		runAt       = fs.String("run-at", "", "run no earlier than this RFC 3339 time")
		attempts    = fs.Int("attempts", 0, "attempts before the job fails (0: server default)")
		backoff     = fs.String("backoff", "", "exponential:BASE[:MAX] or fixed:DELAY, e.g. exponential:1s:5m")
		uniqueKey   = fs.String("unique-key", "", "return the existing unfinished job with this key instead of adding one")
		payloadFile = fs.String("payload-file", "", "read the payload from this file")
		meta        = metaFlag{}
	)
	fs.Var(meta, "meta", "metadata key=value (repeatable)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 2, 3, "QUEUE NAME [PAYLOAD]"); err != nil {
			return err
		}
		var payload []byte
		switch {
		case len(args) == 3 && *payloadFile != "":
			return fmt.Errorf("give the payload as an argument or --payload-file, not both")
		case *payloadFile != "":
			b, err := os.ReadFile(*payloadFile)
			if err != nil {
				return err
			}
			payload = b
		case len(args) == 3 && args[2] == "-":
			b, err := io.ReadAll(os.Stdin)
			if err != nil {
				return fmt.Errorf("read payload from standard input: %w", err)
			}
			payload = b
		case len(args) == 3:
			payload = []byte(args[2])
		}
		opts := []queued.EnqueueOption{queued.Priority(int32(*priority)), queued.MaxAttempts(int32(*attempts)), queued.UniqueKey(*uniqueKey), queued.Delay(*delay)}
		if *runAt != "" {
			t, err := time.Parse(time.RFC3339, *runAt)
			if err != nil {
				return fmt.Errorf("--run-at: %w", err)
			}
			opts = append(opts, queued.RunAt(t))
		}
		if *backoff != "" {
			b, err := queued.ParseBackoff(*backoff)
			if err != nil {
				return err
			}
			opts = append(opts, queued.Backoff(b))
		}
		for k, v := range meta {
			opts = append(opts, queued.Metadata(k, v))
		}
		c, err := e.dial(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		res, err := c.Enqueue(ctx, args[0], args[1], payload, opts...)
		if err != nil {
			return err
		}
		if e.json {
			return printJSON(e.stdout, res)
		}
		if res.Duplicate {
			fmt.Fprintf(e.stdout, "job %d already exists with unique key %q (%s); nothing enqueued\n", res.ID, *uniqueKey, res.State)
			return nil
		}
		fmt.Fprintf(e.stdout, "enqueued job %d in queue %s (%s)\n", res.ID, args[0], res.State)
		return nil
	}
}

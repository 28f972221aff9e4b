package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"

	queued "github.com/queued-dev/queued/clients/go"
)

// subcommand is one verb of a command group (`queuectl jobs ls`,
// `queuectl schedule set`, ...). setup declares the verb's flags on fs and
// returns what runs once they are parsed and the client is dialled.
type subcommand struct {
	usage string
	setup func(fs *flag.FlagSet, e *env) func(ctx context.Context, c *queued.Client, args []string) error
}

// runSubcommand runs args[0] of a command group: it finds the verb in
// table, parses its flags (plus the common ones), dials the server and
// runs it with the remaining arguments.
func runSubcommand(ctx context.Context, e *env, group string, table map[string]subcommand, args []string) error {
	names := slices.Sorted(maps.Keys(table))
	if len(args) == 0 {
		return fmt.Errorf("want a subcommand: %s", strings.Join(names, ", "))
	}
	sub, ok := table[args[0]]
	if !ok {
		return fmt.Errorf("unknown %s subcommand %q (want one of %s)", group, args[0], strings.Join(names, ", "))
	}
	fs := flag.NewFlagSet("queuectl "+group+" "+args[0], flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	e.commonFlags(fs)
	run := sub.setup(fs, e)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: queuectl %s %s [flags] %s\n\nflags:\n", group, args[0], sub.usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return run(ctx, c, fs.Args())
}

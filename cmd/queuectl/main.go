// Command queuectl is the operator's command line for queued: enqueue jobs,
// look at them, cancel them, and work a queue for debugging.
//
//	queuectl [--server ADDR] [--json] COMMAND [flags] [args]
//
// The server address comes from --server, else QUEUED_ADDR, else
// 127.0.0.1:7070. Each command lives in its own file and registers itself
// in the command table, so adding a command is adding a file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	queued "github.com/queued-dev/queued/clients/go"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "queuectl:", err)
		}
		os.Exit(1)
	}
}

// command is one subcommand.
type command struct {
	name    string
	args    string // usage after the flags, e.g. "QUEUE NAME [PAYLOAD]"
	summary string
	// setup declares the command's flags and returns the function that
	// runs it with the remaining arguments.
	setup func(fs *flag.FlagSet, e *env) func(ctx context.Context, args []string) error
}

var commands = map[string]*command{}

// register adds a command to the table; each command's file calls it from
// init.
func register(c *command) { commands[c.name] = c }

// env is what every command gets: where to write, which server, which
// output format.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	server         string
	json           bool
}

func (e *env) dial(ctx context.Context) (*queued.Client, error) {
	return queued.Dial(ctx, e.server)
}

// commonFlags binds --server and --json; they are accepted before the
// command name and after it.
func (e *env) commonFlags(fs *flag.FlagSet) {
	fs.StringVar(&e.server, "server", e.server, "queued gRPC address (QUEUED_ADDR)")
	fs.BoolVar(&e.json, "json", e.json, "print JSON instead of text")
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	e := &env{stdout: stdout, stderr: stderr, getenv: getenv, server: getenv("QUEUED_ADDR")}
	if e.server == "" {
		e.server = queued.DefaultAddr
	}
	top := flag.NewFlagSet("queuectl", flag.ContinueOnError)
	top.SetOutput(stderr)
	e.commonFlags(top)
	top.Usage = func() { usage(stderr, top) }
	if err := top.Parse(args); err != nil {
		return err
	}
	if top.NArg() == 0 {
		usage(stderr, top)
		return flag.ErrHelp
	}
	name := top.Arg(0)
	cmd, ok := commands[name]
	if !ok {
		usage(stderr, top)
		return fmt.Errorf("unknown command %q", name)
	}
	fs := flag.NewFlagSet("queuectl "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	e.commonFlags(fs)
	runCmd := cmd.setup(fs, e)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: queuectl %s [flags] %s\n\n%s\n\nflags:\n", name, cmd.args, cmd.summary)
		fs.PrintDefaults()
	}
	if err := fs.Parse(top.Args()[1:]); err != nil {
		return err
	}
	return runCmd(ctx, fs.Args())
}

func usage(w io.Writer, top *flag.FlagSet) {
	fmt.Fprintf(w, "usage: queuectl [--server ADDR] [--json] COMMAND [flags] [args]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'queuectl COMMAND -h' for a command's flags.\n\nflags:\n")
	top.PrintDefaults()
}

// wantArgs checks the number of positional arguments.
func wantArgs(args []string, lo, hi int, usage string) error {
	if len(args) < lo || len(args) > hi {
		return fmt.Errorf("want %s, got %d argument(s): %s", usage, len(args), strings.Join(args, " "))
	}
	return nil
}

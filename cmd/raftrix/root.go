package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/raftrix/raftrixdb/bench"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/raftrix/raftrixdb/node"
)

// newRootCmd builds the whole command tree. Nothing is shared between two
// trees, so tests can run commands in-process, in parallel, each with its
// own output.
func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "raftrix",
		Short: "RaftrixDB: a sharded, Raft-replicated key-value store",
		Long: `raftrix runs a RaftrixDB node (start), a whole cluster in one process
(demo), and talks to a cluster as a client (kv, status, ranges).

` + exitCodeHelp,
		Version: node.Version,
		// execute prints errors in the one-line form scripts expect.
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		newStartCmd(),
		newDemoCmd(),
		newKVCmd(),
		newStatusCmd(),
		newRangesCmd(),
		newRangeCmd(),
		newClusterCmd(),
		newCertCmd(),
		benchCommand(stdout, stderr),
	)
	return root
}

// execute runs one command line and returns the process exit code, having
// printed any error to stderr as a single "Error: ..." line.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return executeIn(ctx, args, os.Stdin, stdout, stderr)
}

// executeIn is execute with the standard input given, for commands that
// read it (kv txn).
func executeIn(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetIn(stdin)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var re *runError
	if !errors.As(err, &re) {
		// Cobra refused the command line before any command ran: an unknown
		// command or flag, a missing required flag, a wrong argument count.
		fmt.Fprintf(stderr, "Error: %s (see '%s --help')\n", oneLine.Replace(err.Error()), cmd.CommandPath())
		return exitUsage
	}
	fmt.Fprintf(stderr, "Error: %s\n", errorMessage(re.err))
	return exitCode(re.err)
}

// runError marks an error returned by a command's own RunE, as opposed to
// one cobra returned while parsing the command line. Only the latter is
// always a usage error.
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

// runE adapts a command function so that its errors are marked as runErrors.
// benchCommand is the bench tool's command tree, with its run errors marked
// as such (not as usage errors) like every other command's.
func benchCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := bench.NewCommand(stdout, stderr)
	var wrap func(c *cobra.Command)
	wrap = func(c *cobra.Command) {
		if c.RunE != nil {
			c.RunE = runE(c.RunE)
		}
		for _, sub := range c.Commands() {
			wrap(sub)
		}
	}
	wrap(cmd)
	return cmd
}

func runE(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := fn(cmd, args); err != nil {
			return &runError{err: err}
		}
		return nil
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftrix/raftrixdb/node"
)

// Exit codes are part of the CLI's contract with scripts; the root command's
// help lists them (exitCodeHelp) and must change with them.
const (
	exitOK            = 0
	exitError         = 1 // unexpected or server error
	exitUsage         = 2 // bad flags or arguments, InvalidArgument
	exitNotFound      = 3 // kv get of a missing key
	exitCompareFailed = 4 // FailedPrecondition: a conditional write's compare failed
	exitUnavailable   = 5 // Unavailable, DeadlineExceeded, cannot connect
)

const exitCodeHelp = `Exit codes:
  0  success
  1  unexpected or server error
  2  usage error or invalid argument (bad flags or arguments, InvalidArgument
     from the server)
  3  key not found (kv get)
  4  compare failed (FailedPrecondition: --if-absent, --expect-mod-rev,
     --expect-value did not hold; nothing was written)
  5  cluster unavailable or timed out (Unavailable, DeadlineExceeded, cannot
     connect to any endpoint); a timed-out write may or may not have applied`

// usageError is a mistake in the command line found by a command itself
// (cobra's own flag and argument errors are recognised in execute).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// notFoundError is a kv get of a key that does not exist. It is an error
// only so that scripts see exit code 3.
type notFoundError struct{ key []byte }

func (e *notFoundError) Error() string { return fmt.Sprintf("key %q not found", e.key) }

// unreachableError says no endpoint could be connected to, so no request
// was sent anywhere.
type unreachableError struct{ msg string }

func (e *unreachableError) Error() string { return e.msg }

// codedError carries an exit code chosen by a command, for failures that
// summarise several others (status of several endpoints).
type codedError struct {
	code int
	msg  string
}

func (e *codedError) Error() string { return e.msg }

// exitCode maps an error returned by a command to the process exit code.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var (
		ue *usageError
		nf *notFoundError
		un *unreachableError
		ce *codedError
	)
	switch {
	case errors.As(err, &ce):
		return ce.code
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &nf):
		return exitNotFound
	case errors.As(err, &un):
		return exitUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return exitUnavailable
	}
	st, ok := status.FromError(err)
	if !ok {
		return exitError
	}
	switch st.Code() {
	case codes.InvalidArgument:
		return exitUsage
	case codes.NotFound:
		return exitNotFound
	case codes.FailedPrecondition:
		// The proto allows routing refusals on FailedPrecondition too; those
		// are about where the request went, not about the compare.
		if node.RoutingErrorOf(err) != nil {
			return exitUnavailable
		}
		return exitCompareFailed
	case codes.Unavailable, codes.DeadlineExceeded:
		return exitUnavailable
	default:
		return exitError
	}
}

// errorMessage is the text after "Error: ": the server's own message for a
// gRPC status (not Go's "rpc error: code = ... desc = ..." rendering), on
// one line so that scripts can read it with a single line read.
func errorMessage(err error) string {
	msg := err.Error()
	// Only an unwrapped status is replaced by its message: a wrapped one has
	// context in its wrapping that the message alone would lose.
	if s, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		msg = s.GRPCStatus().Message()
	}
	return oneLine.Replace(msg)
}

var oneLine = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ")

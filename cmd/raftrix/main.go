// Command raftrix is RaftrixDB's one binary: it runs a node (start), a
// whole local cluster (demo), and talks to a cluster as a client (kv,
// status, ranges). Run "raftrix --help" for the commands and exit codes.
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(execute(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

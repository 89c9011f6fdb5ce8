package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftrix/raftrixdb/internal/testcluster"
)

// TestJoinNodesLeave starts a node with --join against a running cluster,
// sees it in 'cluster nodes' with replicas moved onto it, decommissions it
// with 'cluster leave' and sees it end with none; a restart of a joined
// node reuses its ID from the data directory.
func TestJoinNodesLeave(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, InitialRanges: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := c.WaitLeaders(ctx); err != nil {
		t.Fatal(err)
	}
	ep := "--endpoints=" + c.Addr(1)
	addr := deadAddr(t)
	dir := filepath.Join(t.TempDir(), "n4")
	args := []string{"start", "--join=" + c.Addr(2), "--listen=" + addr, "--data-dir=" + dir,
		"--tick=20ms", "--insecure", "--http-addr=off"}
	var out, logs syncBuffer
	stop := background(t, &out, &logs, args...)
	row := func() []string {
		got, _, code := runCLI(t, "cluster", "nodes", ep, "--timeout=2s")
		if code != exitOK {
			return nil
		}
		for _, l := range strings.Split(got, "\n") {
			if f := strings.Fields(l); len(f) >= 5 && f[0] == "4" {
				return f
			}
		}
		return nil
	}
	eventually(t, 60*time.Second, "node 4 to join and receive replicas", func() bool {
		f := row()
		return f != nil && f[1] == addr && f[2] == "active" && f[3] == "true" && f[4] != "0"
	})
	if got, _, code := runCLI(t, "cluster", "leave", "4", ep); code != exitOK || got != "node 4 is decommissioning\n" {
		t.Fatalf("leave: exit %d, %q", code, got)
	}
	eventually(t, 60*time.Second, "node 4 to be decommissioned with no replicas", func() bool {
		f := row()
		return f != nil && f[2] == "decommissioned" && f[4] == "0"
	})
	if code := stop(); code != exitOK {
		t.Fatalf("start --join exited %d; logs:\n%s", code, logs.String())
	}
	// Restarting with the same data directory keeps the ID.
	stop = background(t, &out, &logs, args...)
	eventually(t, 20*time.Second, "the restarted node to reuse its ID", func() bool {
		return strings.Contains(logs.String(), "rejoining with the ID in the data directory")
	})
	stop()
}

package bench_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftrix/raftrixdb/bench"
	"github.com/raftrix/raftrixdb/internal/testcluster"
)

// TestBenchAgainstCluster runs the bench command, as a user would, against
// an in-process 3-node cluster with 16 ranges: kv at 50% reads, YCSB A,
// transactions in one range and across four, and the bank, two seconds
// each.
func TestBenchAgainstCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, InitialRanges: 16})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.WaitLeaders(ctx); err != nil {
		t.Fatal(err)
	}
	endpoints := strings.Join([]string{c.Addr(1), c.Addr(2), c.Addr(3)}, ",")
	for _, tc := range []struct {
		name, label string
		args        []string
		ops         []string
	}{
		{"kv", "", []string{"kv", "--read-fraction", "0.5"}, []string{"read", "update"}},
		{"ycsb-A", "", []string{"ycsb", "--workload", "A"}, []string{"read", "update"}},
		{"txn", "txn-1range", []string{"txn", "--keys-per-txn", "4", "--ranges-per-txn", "1", "--ranges", "16"}, []string{"txn"}},
		{"txn", "txn-4range", []string{"txn", "--keys-per-txn", "4", "--ranges-per-txn", "4", "--ranges", "16"}, []string{"txn"}},
		{"bank", "bank", []string{"bank", "--accounts", "100"}, []string{"transfer"}},
	} {
		if tc.label == "" {
			tc.label = tc.name
		}
		t.Run(tc.label, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "report.json")
			args := append(tc.args, "--endpoints", endpoints, "--clients", "8", "--conns", "3",
				"--duration", "2s", "--keys", "1000", "--json", path, "--label", tc.label)
			var stdout, stderr bytes.Buffer
			cmd := bench.NewCommand(&stdout, &stderr)
			cmd.SetArgs(args)
			if err := cmd.ExecuteContext(ctx); err != nil {
				t.Fatalf("bench %v: %v\nstderr:\n%s", args, err, stderr.String())
			}
			t.Logf("stdout:\n%s", stdout.String())
			rep, err := bench.ReadJSONFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Workload != tc.name || rep.Label != tc.label || rep.Driver != "raftrix" || rep.Clients != 8 || rep.Conns != 3 {
				t.Errorf("report header: %+v", rep)
			}
			if rep.Total.Count == 0 || rep.Total.Errors != 0 {
				t.Fatalf("total: %d ops, %d errors %v", rep.Total.Count, rep.Total.Errors, rep.Total.ErrorsByCode)
			}
			if len(rep.Ops) != len(tc.ops) {
				t.Fatalf("ops %+v, want %v", rep.Ops, tc.ops)
			}
			for i, op := range rep.Ops {
				if op.Op != tc.ops[i] || op.Count == 0 || op.LatencyUs.P50 == 0 || op.LatencyUs.Max < op.LatencyUs.P99 {
					t.Errorf("op %d: %+v", i, op)
				}
				// Every key was loaded first, so no read misses.
				if op.Misses != 0 {
					t.Errorf("%s: %d misses after the load", op.Op, op.Misses)
				}
			}
			if !strings.Contains(stdout.String(), "p99.9(ms)") || !strings.Contains(stderr.String(), "ops/s") {
				t.Errorf("missing table or live line:\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
			}
			if strings.Contains(stderr.String(), "warning") {
				t.Errorf("warnings:\n%s", stderr.String())
			}
			if tc.name == "bank" {
				if b := rep.Bank; b == nil || !b.Conserved || b.Total != 100*1000 || b.Accounts != 100 {
					t.Errorf("bank check: %+v", b)
				}
			} else if rep.Bank != nil {
				t.Errorf("bank check in a %s run", tc.name)
			}
		})
	}
}

// TestBenchAgainstEtcd runs YCSB F (reads and compare-and-set) on the etcd
// driver against a real etcd cluster. It runs only when
// RAFTRIX_BENCH_ETCD_ENDPOINTS lists the members (see ETCD.md), e.g.
// 127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379.
func TestBenchAgainstEtcd(t *testing.T) {
	endpoints := os.Getenv("RAFTRIX_BENCH_ETCD_ENDPOINTS")
	if endpoints == "" {
		t.Skip("RAFTRIX_BENCH_ETCD_ENDPOINTS is not set")
	}
	path := filepath.Join(t.TempDir(), "report.json")
	var stdout, stderr bytes.Buffer
	cmd := bench.NewCommand(&stdout, &stderr)
	cmd.SetArgs([]string{"ycsb", "--workload", "F", "--driver", "etcd", "--endpoints", endpoints,
		"--clients", "8", "--duration", "2s", "--keys", "1000", "--json", path})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%v\nstderr:\n%s", err, stderr.String())
	}
	t.Logf("stdout:\n%s", stdout.String())
	rep, err := bench.ReadJSONFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Total.Count == 0 || rep.Total.Errors != 0 || len(rep.Ops) != 2 || rep.Ops[1].Op != "rmw" || rep.Ops[1].Count == 0 {
		t.Fatalf("report: %+v", rep)
	}
}

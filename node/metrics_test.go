package node_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/raftrix/raftrixdb/node"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// operatorMetrics are the metrics of the issue "Operating it", item 1. moves
// says whether the load of TestOperatorMetricsUnderLoad must move the
// metric's sum over the nodes (a counter's value, a histogram's count).
var operatorMetrics = []struct {
	name  string
	moves bool
}{
	{"raftrix_grpc_request_duration_seconds", true},
	{"raftrix_raft_proposals_total", true},
	{"raftrix_raft_commit_latency_seconds", true},
	{"raftrix_raft_apply_batch_seconds", true},
	{"raftrix_snapshot_sent_bytes_total", true},
	{"raftrix_snapshot_received_bytes_total", true},
	{"raftrix_snapshot_send_duration_seconds", true},
	{"raftrix_snapshot_receive_duration_seconds", true},
	{"raftrix_txn_commits_total", true},
	{"raftrix_txn_aborts_total", true},
	{"raftrix_txn_retries_total", true},
	{"raftrix_txn_intents_resolved_total", true},
	{"raftrix_txn_phase_seconds", true},
	{"raftrix_engine_wal_written_bytes_total", true},
	{"raftrix_engine_wal_fsync_seconds", true},  // every put's append is synced
	{"raftrix_record_cache_hits_total", true},   // the gets of keys just put
	{"raftrix_record_cache_misses_total", true}, // the first put of each key
	// Gauges, checked below, and engine metrics a small load need not move.
	{"raftrix_ranges", false},
	{"raftrix_replicas", false},
	{"raftrix_replicas_leaders", false},
	{"raftrix_replicas_quiesced", false},
	{"raftrix_engine_compactions_total", false},
	{"raftrix_engine_flushes_total", false},
	{"raftrix_engine_compaction_debt_bytes", false},
	{"raftrix_engine_l0_files", false},
	{"raftrix_engine_l0_sublevels", false},
	{"raftrix_engine_disk_usage_bytes", false},
	{"raftrix_engine_memtable_bytes", false},
	{"raftrix_engine_wal_bytes", false},
	{"raftrix_record_cache_bytes", false},
	{"raftrix_txn_records_in_memory", false},
	// Existing ones the load also moves.
	{"raftrix_snapshots_sent_total", true},
	{"raftrix_snapshots_received_total", true},
	{"raftrix_range_splits_total", true},
	{"raftrix_replica_moves_total", true},
}

// TestOperatorMetricsUnderLoad runs puts, reads, transactions (including
// one that retries and one that aborts), a split and a replica move on four
// nodes, and checks over /metrics that every new metric is exported by
// every node and that those the load exercises moved.
func TestOperatorMetricsUnderLoad(t *testing.T) {
	const ranges = 4
	nodes := startNodes(t, 4, 0, ranges, func(_ uint64, cfg *node.Config) { cfg.ManualPlacement = true })
	waitReady(t, nodes...)
	scrapeAll := func() []map[string]*dto.MetricFamily {
		var out []map[string]*dto.MetricFamily
		for _, n := range nodes {
			out = append(out, scrape(t, n))
		}
		return out
	}
	before := scrapeAll()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kvs := map[uint64]pb.KVClient{}
	admins := map[uint64]pb.AdminClient{}
	for _, n := range nodes {
		conn, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		kvs[n.ID()], admins[n.ID()] = pb.NewKVClient(conn), pb.NewAdminClient(conn)
	}

	// Puts, reads and a refused request through every node holding replicas.
	for id := uint64(1); id <= 3; id++ {
		for i := range 20 {
			key := keyInRange(i%ranges, ranges, fmt.Sprintf("load-%d-%d", id, i))
			if _, err := kvs[id].Put(ctx, &pb.PutRequest{Key: key, Value: []byte("v")}); err != nil {
				t.Fatalf("put through node %d: %v", id, err)
			}
			if _, err := kvs[id].Get(ctx, &pb.GetRequest{Key: key}); err != nil {
				t.Fatalf("get through node %d: %v", id, err)
			}
		}
	}
	if _, err := kvs[1].Scan(ctx, &pb.ScanRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kvs[1].Put(ctx, &pb.PutRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("put without a key: %v", err)
	}

	// Transactions over one range and over two.
	a, b := keyInRange(1, ranges, "txn-a"), keyInRange(2, ranges, "txn-b")
	if _, err := kvs[1].Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{putOp(a, []byte("1"))}}); err != nil {
		t.Fatalf("one-range txn: %v", err)
	}
	if _, err := kvs[2].Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{putOp(a, []byte("2")), putOp(b, []byte("2"))}}); err != nil {
		t.Fatalf("two-range txn: %v", err)
	}
	// A retry: a one-range transaction meets the intent of a committed
	// transaction whose intents were never resolved, settles it and runs
	// again.
	x := keyInRange(3, ranges, "retry")
	prepareByHand(ctx, t, nodes[0], "committed", x, time.Now().UnixNano())
	if _, err := nodes[0].Evaluate(ctx, &pb.InternalRequest{Key: x, Op: &pb.InternalRequest_End{End: &pb.TxnEnd{
		TxnId: []byte("committed"), PrimaryKey: x, Commit: true, Succeeded: true, CommitRevision: time.Now().UnixNano(),
	}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := kvs[3].Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{putOp(x, []byte("after"))}}); err != nil {
		t.Fatalf("txn over a committed intent: %v", err)
	}
	// An abort: a two-range transaction waits for an older pending one
	// until its deadline.
	y := keyInRange(0, ranges, "abort")
	prepareByHand(ctx, t, nodes[0], "older", y, 1)
	tctx, tcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := kvs[1].Txn(tctx, &pb.TxnRequest{Success: []*pb.RequestOp{putOp(y, []byte("1")), putOp(b, []byte("3"))}})
	tcancel()
	if err == nil {
		t.Fatal("a transaction blocked by an older pending one committed")
	}

	// A split, and a move onto node 4 (which streams a snapshot).
	if _, err := admins[1].SplitRange(ctx, &pb.SplitRangeRequest{Key: keyInRange(0, ranges, "m")}); err != nil {
		t.Fatalf("split: %v", err)
	}
	lr, err := admins[1].ListRanges(ctx, &pb.ListRangesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var moved *pb.RangeInfo
	for _, ri := range lr.Ranges {
		if ri.Descriptor_.RangeId == 1 {
			moved = ri
		}
	}
	from := uint64(1)
	if moved.LeaderNodeId == from {
		from = 2
	}
	if _, err := admins[1].MoveReplica(ctx, &pb.MoveReplicaRequest{RangeId: 1, FromNode: from, ToNode: 4}); err != nil {
		t.Fatalf("move range 1 from node %d to 4: %v", from, err)
	}

	// Followers apply a moment later, and idle ranges take a few ticks to
	// quiesce.
	var problems []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The user ranges, the system range and the split's right half.
		problems = operatorMetricsProblems(before, scrapeAll(), ranges+2)
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(problems) > 0 {
		t.Fatal(strings.Join(problems, "\n"))
	}
}

// prepareByHand writes the intent (and the PENDING record) of a transaction
// over key alone, as a coordinator that then went silent would.
func prepareByHand(ctx context.Context, t *testing.T, n *node.Node, id string, key []byte, priority int64) {
	t.Helper()
	resp, err := n.Evaluate(ctx, &pb.InternalRequest{Key: key, Op: &pb.InternalRequest_Prepare{Prepare: &pb.TxnPrepare{
		TxnId: []byte(id), PrimaryKey: key, Priority: priority, Heartbeat: time.Now().UnixNano(), WriteRecord: true,
		Success: []*pb.IndexedOp{{Index: 0, Op: putOp(key, []byte(id))}},
	}}})
	if err != nil || resp.Prepare == nil || resp.Prepare.Conflict != nil || resp.Prepare.Aborted {
		t.Fatalf("prepare %s by hand: %v, %v", id, resp, err)
	}
}

// operatorMetricsProblems lists what is wrong with the nodes' metrics after
// the load; ranges is the number of ranges.
func operatorMetricsProblems(before, after []map[string]*dto.MetricFamily, ranges int) []string {
	var out []string
	total := func(mfss []map[string]*dto.MetricFamily, name string) float64 {
		var v float64
		for _, mfs := range mfss {
			s, _ := sum(mfs, name)
			v += s
		}
		return v
	}
	for _, m := range operatorMetrics {
		for i, mfs := range after {
			if _, ok := mfs[m.name]; !ok {
				out = append(out, fmt.Sprintf("node %d does not export %s", i+1, m.name))
			}
		}
		if b, a := total(before, m.name), total(after, m.name); m.moves && a <= b {
			out = append(out, fmt.Sprintf("%s did not move under load: %v -> %v", m.name, b, a))
		}
	}
	for _, protocol := range []string{"one_phase", "two_phase"} {
		var v float64
		for _, mfs := range after {
			v += labeled(mfs, "raftrix_txn_commits_total", "protocol", protocol)
		}
		if v == 0 {
			out = append(out, "no "+protocol+" transaction commit counted")
		}
	}
	for _, code := range []string{"OK", "InvalidArgument"} {
		if labeled(after[0], "raftrix_grpc_request_duration_seconds", "code", code) == 0 {
			out = append(out, "node 1 counted no gRPC call with code "+code)
		}
	}
	// Every range is counted once, on its leader's node.
	if got := total(after, "raftrix_ranges"); got != float64(ranges) {
		out = append(out, fmt.Sprintf("raftrix_ranges sums to %v over the nodes, want %d", got, ranges))
	}
	if got := total(after, "raftrix_replicas_leaders"); got != float64(ranges) {
		out = append(out, fmt.Sprintf("raftrix_replicas_leaders sums to %v over the nodes, want %d", got, ranges))
	}
	if got := total(after, "raftrix_replicas"); got != float64(3*ranges) {
		out = append(out, fmt.Sprintf("raftrix_replicas sums to %v over the nodes, want %d", got, 3*ranges))
	}
	if got := total(after, "raftrix_replicas_quiesced"); got == 0 {
		out = append(out, "no replica quiesced after the load")
	}
	for i, mfs := range after {
		for _, name := range []string{"raftrix_engine_disk_usage_bytes", "raftrix_engine_memtable_bytes"} {
			if v, _ := sum(mfs, name); v <= 0 {
				out = append(out, fmt.Sprintf("node %d: %s = %v", i+1, name, v))
			}
		}
	}
	return out
}

// labeled adds up a metric's samples whose label has value (a counter's
// value, a histogram's sample count).
func labeled(mfs map[string]*dto.MetricFamily, name, label, value string) float64 {
	var v float64
	for _, m := range mfs[name].GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label && lp.GetValue() == value {
				v += m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return v
}

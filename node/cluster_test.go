package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftrix/raftrixdb/internal/testcluster"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// keyInRange returns a key that the even bootstrap split puts in range i of n
// (0-based).
func keyInRange(i, n int, suffix string) []byte {
	v := uint32(i) * (1 << 16) / uint32(n)
	return append([]byte{byte(v >> 8), byte(v)}, []byte(suffix)...)
}

func TestWritesToEveryRangeReadableFromEveryNode(t *testing.T) {
	const ranges = 16
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, InitialRanges: ranges})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.WaitLeaders(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < ranges; i++ {
		key := keyInRange(i, ranges, "k")
		// Write through a node chosen round-robin, so most writes are forwarded.
		if _, err := c.KV(uint64(i%3+1)).Put(ctx, &pb.PutRequest{Key: key, Value: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatalf("put range %d: %v", i, err)
		}
	}
	for id := uint64(1); id <= 3; id++ {
		for i := 0; i < ranges; i++ {
			key := keyInRange(i, ranges, "k")
			resp, err := c.KV(id).Get(ctx, &pb.GetRequest{Key: key})
			if err != nil {
				t.Fatalf("get range %d from node %d: %v", i, id, err)
			}
			if !resp.Found || string(resp.Kv.Value) != fmt.Sprint(i) {
				t.Fatalf("get range %d from node %d: got %v", i, id, resp)
			}
			if resp.Header.RangeId != uint64(i+1) {
				t.Fatalf("key of range %d served by range %d", i+1, resp.Header.RangeId)
			}
		}
	}
}

// leaderOf returns the node leading the range that holds key.
func leaderOf(t *testing.T, c *testcluster.Cluster, ctx context.Context, rangeID uint64) uint64 {
	t.Helper()
	leaders, err := c.WaitLeaders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return leaders[rangeID]
}

// putRetry writes through any live node, retrying Unavailable answers (an
// election in progress, a dead node) until ctx ends. Each attempt uses a
// fresh value check: a retried plain put of the same value is harmless.
func putRetry(ctx context.Context, c *testcluster.Cluster, nodes []uint64, key, value []byte) error {
	var last error
	for i := 0; ctx.Err() == nil; i++ {
		id := nodes[i%len(nodes)]
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := c.KV(id).Put(actx, &pb.PutRequest{Key: key, Value: value})
		cancel()
		if err == nil {
			return nil
		}
		if status.Code(err) != codes.Unavailable && status.Code(err) != codes.DeadlineExceeded {
			return err
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("put %q: %v (last error %v)", key, ctx.Err(), last)
}

func getRetry(ctx context.Context, c *testcluster.Cluster, nodes []uint64, key []byte) (*pb.GetResponse, error) {
	var last error
	for i := 0; ctx.Err() == nil; i++ {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := c.KV(nodes[i%len(nodes)]).Get(actx, &pb.GetRequest{Key: key})
		cancel()
		if err == nil {
			return resp, nil
		}
		if status.Code(err) != codes.Unavailable && status.Code(err) != codes.DeadlineExceeded {
			return nil, err
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("get %q: %v (last error %v)", key, ctx.Err(), last)
}

func others(all []uint64, except uint64) []uint64 {
	var out []uint64
	for _, id := range all {
		if id != except {
			out = append(out, id)
		}
	}
	return out
}

func TestWritesContinueAfterLeaderIsKilled(t *testing.T) {
	const ranges = 16
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, InitialRanges: ranges})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	all := []uint64{1, 2, 3}
	victim := leaderOf(t, c, ctx, 1)
	key := keyInRange(0, ranges, "before")
	if err := putRetry(ctx, c, all, key, []byte("v1")); err != nil {
		t.Fatal(err)
	}
	c.Stop(victim)
	live := others(all, victim)
	// Every range, including those the victim led, accepts writes again.
	for i := 0; i < ranges; i++ {
		if err := putRetry(ctx, c, live, keyInRange(i, ranges, "after"), []byte("v2")); err != nil {
			t.Fatalf("range %d after killing node %d: %v", i+1, victim, err)
		}
	}
	resp, err := getRetry(ctx, c, live, key)
	if err != nil || !resp.Found || string(resp.Kv.Value) != "v1" {
		t.Fatalf("write acknowledged before the kill: got %v, %v", resp, err)
	}
	if newLeader := leaderOf(t, c, ctx, 1); newLeader == victim {
		t.Fatalf("range 1 still led by stopped node %d", victim)
	}
}

func TestRestartedNodeCatchesUpBySnapshotAfterTruncation(t *testing.T) {
	const ranges = 4
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, InitialRanges: ranges, LogTruncateThreshold: 20})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	all := []uint64{1, 2, 3}
	leader := leaderOf(t, c, ctx, 1)
	down := others(all, leader)[0]
	c.Stop(down)
	live := others(all, down)
	// Enough writes to range 1 that its log is truncated past where the
	// stopped node left off.
	for i := 0; i < 200; i++ {
		if err := putRetry(ctx, c, live, keyInRange(0, ranges, fmt.Sprintf("k%03d", i)), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	info := rangeInfo(t, ctx, c, leader, 1)
	if first := info.AppliedIndex; first < 150 {
		t.Fatalf("expected range 1 to have applied the writes, applied=%d", first)
	}
	c.Restart(down)
	// The restarted node must reach the leader's applied index; with the
	// log truncated it can only do so through a snapshot.
	deadline := time.Now().Add(20 * time.Second)
	for {
		want := rangeInfo(t, ctx, c, leader, 1).AppliedIndex
		got := rangeInfo(t, ctx, c, down, 1).AppliedIndex
		if got >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d stuck at applied %d, leader at %d", down, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Its local (stale) state holds every write.
	for i := 0; i < 200; i++ {
		key := keyInRange(0, ranges, fmt.Sprintf("k%03d", i))
		resp, err := c.KV(down).Get(ctx, &pb.GetRequest{Key: key, Stale: true})
		if err != nil || !resp.Found || string(resp.Kv.Value) != fmt.Sprint(i) {
			t.Fatalf("stale read of %q on restarted node: %v, %v", key, resp, err)
		}
	}
	if got := c.Metric(down, "raftrix_snapshots_received_total"); got < 1 {
		t.Fatalf("restarted node received %v snapshots, want at least 1", got)
	}
}

// TestNodeThatSkippedASplitGetsTheRightHandSide: a node that was down while
// a range split, and caught up on the left-hand side by a snapshot (its log
// was truncated past the split), never applies the split and so never
// creates the right-hand replica. The right-hand side's leader must notice
// (the node reports the replica missing) and create it with a snapshot.
// Found by the nemesis, seed 51 (3 nodes, truncation threshold 16).
func TestNodeThatSkippedASplitGetsTheRightHandSide(t *testing.T) {
	const ranges = 2
	// Manual placement: no leader moves to the node about to stop.
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, InitialRanges: ranges, LogTruncateThreshold: 20, ManualPlacement: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	all := []uint64{1, 2, 3}
	leader := leaderOf(t, c, ctx, 1)
	down := others(all, leader)[0]
	c.Stop(down)
	live := others(all, down)
	var split *pb.SplitRangeResponse
	var err error
	for i := 0; ; i++ {
		// Unavailable while a range elects or a stale route points at the
		// stopped node.
		split, err = c.Admin(live[i%len(live)]).SplitRange(ctx, &pb.SplitRangeRequest{Key: keyInRange(0, ranges, "m")})
		if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	right := split.Right.RangeId
	// Enough writes to the left-hand side that its log is truncated past
	// the split.
	for i := 0; i < 100; i++ {
		if err := putRetry(ctx, c, live, keyInRange(0, ranges, fmt.Sprintf("a%03d", i)), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := putRetry(ctx, c, live, keyInRange(0, ranges, "z"), []byte("right")); err != nil {
		t.Fatal(err)
	}
	c.Restart(down)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := c.KV(down).Get(ctx, &pb.GetRequest{Key: keyInRange(0, ranges, "z"), Stale: true})
		if err == nil && resp.Found && string(resp.Kv.Value) == "right" && resp.GetHeader().GetRangeId() == right && resp.GetHeader().GetNodeId() == down {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d has no up-to-date replica of the right-hand range %d: %v, %v", down, right, resp, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := c.Metric(down, "raftrix_snapshots_received_total"); got < 2 {
		t.Fatalf("restarted node received %v snapshots, want one per side of the split", got)
	}
}

func rangeInfo(t *testing.T, ctx context.Context, c *testcluster.Cluster, nodeID, rangeID uint64) *pb.RangeInfo {
	t.Helper()
	resp, err := c.Admin(nodeID).ListRanges(ctx, &pb.ListRangesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ri := range resp.Ranges {
		if ri.Descriptor_.RangeId == rangeID {
			return ri
		}
	}
	t.Fatalf("node %d has no range %d", nodeID, rangeID)
	return nil
}

func TestAcknowledgedWritesSurviveFullRestart(t *testing.T) {
	const ranges = 16
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, InitialRanges: ranges})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	all := []uint64{1, 2, 3}
	if _, err := c.WaitLeaders(ctx); err != nil {
		t.Fatal(err)
	}
	written := map[string]string{}
	for i := 0; i < 100; i++ {
		key := keyInRange(i%ranges, ranges, fmt.Sprintf("r%d", i))
		if err := putRetry(ctx, c, all, key, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		written[string(key)] = fmt.Sprint(i)
	}
	for _, id := range all {
		c.Stop(id)
	}
	for _, id := range all {
		c.Restart(id)
	}
	for k, v := range written {
		resp, err := getRetry(ctx, c, all, []byte(k))
		if err != nil || !resp.Found || string(resp.Kv.Value) != v {
			t.Fatalf("after restart %q: got %v, %v; want %q", k, resp, err, v)
		}
	}
}

func TestNodeWithoutReplicasRoutesRequests(t *testing.T) {
	const ranges = 8
	c := testcluster.Start(t, testcluster.Options{Nodes: 4, InitialRanges: ranges})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.WaitLeaders(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := c.Admin(4).NodeStatus(ctx, &pb.NodeStatusRequest{})
	if err != nil || st.Replicas != 0 {
		t.Fatalf("node 4 should hold no replicas before placement exists: %v, %v", st, err)
	}
	for i := 0; i < ranges; i++ {
		key := keyInRange(i, ranges, "via4")
		if _, err := c.KV(4).Put(ctx, &pb.PutRequest{Key: key, Value: []byte("x")}); err != nil {
			t.Fatalf("put through node 4: %v", err)
		}
		resp, err := c.KV(4).Get(ctx, &pb.GetRequest{Key: key})
		if err != nil || !resp.Found {
			t.Fatalf("get through node 4: %v, %v", resp, err)
		}
	}
	resp, err := c.KV(4).Scan(ctx, &pb.ScanRequest{})
	if err != nil || len(resp.Kvs) != ranges {
		t.Fatalf("scan through node 4: %d keys, %v", len(resp.GetKvs()), err)
	}
}

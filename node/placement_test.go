package node_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/raftrix/raftrixdb/internal/testcluster"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// placementView is the cluster as the placement leader reports it.
func placementView(ctx context.Context, c *testcluster.Cluster, via uint64) (map[uint64]*pb.NodeInfo, error) {
	resp, err := pb.NewPlacementClient(c.Conn(via)).ListNodes(ctx, &pb.ListNodesRequest{})
	if err != nil {
		return nil, err
	}
	out := map[uint64]*pb.NodeInfo{}
	for _, n := range resp.Nodes {
		out[n.Node.NodeId] = n
	}
	return out, nil
}

// replicasByNode counts, from every live node's own ListRanges, the voters
// each node holds (by the descriptors the leaders report).
func descriptorsByLeader(t *testing.T, ctx context.Context, c *testcluster.Cluster, nodes []uint64) map[uint64]*pb.RangeDescriptor {
	t.Helper()
	out := map[uint64]*pb.RangeDescriptor{}
	for _, id := range nodes {
		resp, err := c.Admin(id).ListRanges(ctx, &pb.ListRangesRequest{})
		if err != nil {
			continue
		}
		for _, ri := range resp.Ranges {
			if ri.RaftState == "StateLeader" {
				out[ri.Descriptor_.RangeId] = ri.Descriptor_
			}
		}
	}
	return out
}

func withinBand(counts map[uint64]int, nodes []uint64) bool {
	total := 0
	for _, id := range nodes {
		total += counts[id]
	}
	mean := float64(total) / float64(len(nodes))
	band := math.Max(1, 0.1*mean)
	for _, id := range nodes {
		if math.Abs(float64(counts[id])-mean) > band {
			return false
		}
	}
	return true
}

func TestJoinRebalancesReplicasAndLeaders(t *testing.T) {
	const ranges = 12
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, InitialRanges: ranges})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := c.WaitLeaders(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < ranges; i++ {
		if err := putRetry(ctx, c, []uint64{1, 2, 3}, keyInRange(i, ranges, "k"), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	id := c.Join(ctx)
	if id != 4 {
		t.Fatalf("joined node got ID %d, want 4", id)
	}
	all := []uint64{1, 2, 3, 4}
	var replicas, leaders map[uint64]int
	err := waitUntil(ctx, 60*time.Second, func() bool {
		descs := descriptorsByLeader(t, ctx, c, all)
		if len(descs) != ranges+1 {
			return false
		}
		replicas, leaders = map[uint64]int{}, map[uint64]int{}
		for rid, d := range descs {
			voters := 0
			for _, r := range d.Replicas {
				if r.Type == pb.ReplicaDescriptor_VOTER {
					replicas[r.NodeId]++
					voters++
				}
			}
			if rid != ranges+1 && voters != 3 {
				return false
			}
		}
		for _, id := range all {
			resp, err := c.Admin(id).NodeStatus(ctx, &pb.NodeStatusRequest{})
			if err != nil {
				return false
			}
			leaders[id] = int(resp.Leaders)
		}
		return replicas[4] > 0 && withinBand(replicas, all) && leaders[4] > 0 && withinBand(leaders, all)
	})
	if err != nil {
		t.Fatalf("not balanced: replicas %v leaders %v", replicas, leaders)
	}
	// Every key is still there, read through the new node.
	for i := 0; i < ranges; i++ {
		g, err := getRetry(ctx, c, []uint64{4}, keyInRange(i, ranges, "k"))
		if err != nil || string(g.Kv.GetValue()) != fmt.Sprint(i) {
			t.Fatalf("key %d after rebalancing: %v, %v", i, g, err)
		}
	}
}

func TestDeadNodeReplicasAreRecreated(t *testing.T) {
	const ranges = 6
	c := testcluster.Start(t, testcluster.Options{Nodes: 4, InitialRanges: ranges, DeadTimeout: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if _, err := c.WaitLeaders(ctx); err != nil {
		t.Fatal(err)
	}
	// Let placement settle (node 4 gets replicas), then kill node 3.
	time.Sleep(time.Second)
	c.Stop(3)
	live := []uint64{1, 2, 4}
	var bad string
	err := waitUntil(ctx, 20*time.Second, func() bool {
		descs := descriptorsByLeader(t, ctx, c, live)
		if len(descs) != ranges+1 {
			bad = fmt.Sprintf("%d ranges with a leader", len(descs))
			return false
		}
		for rid, d := range descs {
			voters := 0
			for _, r := range d.Replicas {
				if r.NodeId == 3 {
					bad = fmt.Sprintf("range %d still has a replica on dead node 3", rid)
					return false
				}
				if r.Type == pb.ReplicaDescriptor_VOTER {
					voters++
				}
			}
			if voters < 3 {
				bad = fmt.Sprintf("range %d has %d voters", rid, voters)
				return false
			}
		}
		return true
	})
	if err != nil {
		for _, id := range live {
			resp, _ := c.Admin(id).ListRanges(ctx, &pb.ListRangesRequest{})
			for _, ri := range resp.GetRanges() {
				t.Logf("node %d range %d leader %d term %d applied %d %s quiesced %v replicas %v raft %s", id, ri.Descriptor_.RangeId, ri.LeaderNodeId, ri.Term, ri.AppliedIndex, ri.RaftState, ri.Quiesced, ri.Descriptor_.Replicas, ri.RaftConfig)
			}
		}
		t.Fatalf("ranges not repaired: %s", bad)
	}
}

func TestLeavingNodeEndsWithNoReplicas(t *testing.T) {
	const ranges = 6
	c := testcluster.Start(t, testcluster.Options{Nodes: 4, InitialRanges: ranges})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := c.WaitLeaders(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := pb.NewPlacementClient(c.Conn(4)).LeaveCluster(ctx, &pb.LeaveClusterRequest{NodeId: 2}); err != nil {
		t.Fatal(err)
	}
	var last *pb.NodeInfo
	err := waitUntil(ctx, 30*time.Second, func() bool {
		st, err := c.Admin(2).NodeStatus(ctx, &pb.NodeStatusRequest{})
		if err != nil || st.Replicas != 0 {
			return false
		}
		view, err := placementView(ctx, c, 1)
		if err != nil {
			return false
		}
		last = view[2]
		return last.GetNode().GetState() == pb.NodeRecord_DECOMMISSIONED
	})
	if err != nil {
		for _, id := range []uint64{1, 2, 3, 4} {
			resp, _ := c.Admin(id).ListRanges(ctx, &pb.ListRangesRequest{})
			for _, ri := range resp.GetRanges() {
				t.Logf("node %d range %d leader %d %s replicas %v raft %s", id, ri.Descriptor_.RangeId, ri.LeaderNodeId, ri.RaftState, ri.Descriptor_.Replicas, ri.RaftConfig)
			}
		}
		view, _ := placementView(ctx, c, 1)
		for id, ni := range view {
			t.Logf("placement: node %d %v", id, ni)
		}
		t.Fatalf("node 2 did not finish leaving: %v", last)
	}
	for i := 0; i < ranges; i++ {
		if err := putRetry(ctx, c, []uint64{1, 3, 4}, keyInRange(i, ranges, "after"), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPlacementSurvivesLossOfItsLeader(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, InitialRanges: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leaders, err := c.WaitLeaders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sys := leaders[3] // the system range is the last one
	c.Stop(sys)
	live := others([]uint64{1, 2, 3}, sys)
	// The registry survived: the new placement leader lists all three nodes
	// and hands out the next ID to a joining node.
	var view map[uint64]*pb.NodeInfo
	if err := waitUntil(ctx, 20*time.Second, func() bool {
		view, err = placementView(ctx, c, live[0])
		return err == nil && len(view) == 3
	}); err != nil {
		t.Fatalf("placement after losing its leader: %v, %v", view, err)
	}
	if id := c.Join(ctx); id != 4 {
		t.Fatalf("joined node got ID %d, want 4", id)
	}
	if err := waitUntil(ctx, 20*time.Second, func() bool {
		resp, err := pb.NewPlacementClient(c.Conn(live[1])).Lookup(ctx, &pb.LookupRequest{Key: []byte("a")})
		return err == nil && resp.Descriptor_.RangeId == 1
	}); err != nil {
		t.Fatal("lookup after losing the placement leader never answered")
	}
}

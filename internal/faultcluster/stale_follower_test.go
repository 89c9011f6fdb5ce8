package faultcluster

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/raftrix/raftrixdb/node"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// TestFollowerThatMissedAMoveCatchesUpWithTheReplicaItAdded: a follower is
// cut off while a move replaces another member with a replica on node 4,
// and that new replica becomes the leader. After the heal the follower's
// descriptor still predates the move, so it does not know which node holds
// its leader. It must still answer it: the leader learns the follower's log
// only from those answers (its heartbeats carry the commit index only up to
// what the follower acknowledged), so unanswered the follower never applies
// the move and stays behind for good. Found by the nemesis (seed 70 of a run
// of 4 histories at a time, 4 nodes with moves).
func TestFollowerThatMissedAMoveCatchesUpWithTheReplicaItAdded(t *testing.T) {
	const rangeID = 1
	// While cut is set, every Raft message of the range to or from the
	// stale follower is lost (replica IDs equal node IDs here: the range
	// starts on nodes 1-3 as replicas 1-3). A partition would not do: the
	// old leader's appends queued during it still arrive after the heal and
	// catch the follower up.
	var cut atomic.Uint64
	knobs := func(nodeID uint64) node.TestingKnobs {
		return node.TestingKnobs{DropRaftMessage: func(r uint64, m raftpb.Message) bool {
			s := cut.Load()
			return r == rangeID && s != 0 && (nodeID == s || m.To == s)
		}}
	}
	c := start(t, Options{Nodes: 4, InitialRanges: 1, ManualPlacement: true, Knobs: knobs})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leaders, err := c.WaitLeaders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leader := leaders[rangeID]
	var stale, moved uint64 // the follower cut off, the member moved to node 4
	for _, id := range []uint64{1, 2, 3} {
		switch {
		case id == leader:
		case stale == 0:
			stale = id
		default:
			moved = id
		}
	}
	if !rangeOn(ctx, c, stale, rangeID, func(ri *pb.RangeInfo) bool { return ri.ReplicaId == stale }) {
		t.Fatalf("node %d does not hold replica %d of range %d", stale, stale, rangeID)
	}
	if err := put(ctx, c, []uint64{leader}, "before", "v"); err != nil {
		t.Fatal(err)
	}

	cut.Store(stale)
	if _, err := c.Admin(leader).MoveReplica(ctx, &pb.MoveReplicaRequest{RangeId: rangeID, FromNode: moved, ToNode: 4}); err != nil {
		t.Fatalf("move node %d's replica to node 4: %v", moved, err)
	}
	if _, err := c.Admin(4).TransferLeader(ctx, &pb.TransferLeaderRequest{RangeId: rangeID, ToNode: 4}); err != nil {
		t.Fatalf("transfer the lead to node 4: %v", err)
	}
	if err := put(ctx, c, []uint64{4}, "during", "v"); err != nil {
		t.Fatal(err)
	}
	if !rangeOn(ctx, c, stale, rangeID, func(ri *pb.RangeInfo) bool { return len(ri.Descriptor_.Replicas) == 3 && !hasNode(ri.Descriptor_, 4) }) {
		t.Fatalf("node %d learned of the move while cut off", stale)
	}

	cut.Store(0)
	waitFor(t, fmt.Sprintf("node %d applies the move (a replica on node 4)", stale), func() bool {
		return rangeOn(ctx, c, stale, rangeID, func(ri *pb.RangeInfo) bool { return hasNode(ri.Descriptor_, 4) })
	})
	waitFor(t, fmt.Sprintf("node %d holds the write made while it was cut off", stale), func() bool {
		resp, err := c.KV(stale).Get(ctx, &pb.GetRequest{Key: []byte("during"), Stale: true})
		return err == nil && string(resp.GetKv().GetValue()) == "v"
	})
}

func hasNode(d *pb.RangeDescriptor, nodeID uint64) bool {
	for _, r := range d.Replicas {
		if r.NodeId == nodeID {
			return true
		}
	}
	return false
}

package placement

import (
	"testing"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// TestServiceFindsALearnerRemovedWhileAway: a failed move left a learner
// on node 4 (replica 4 of range 7), and the range removed it while node 4
// was down. Whichever reaches placement first, node 4's report of its old
// descriptor or the leader's report of the removal, node 4 is told to
// destroy the learner on its next heartbeat, once. Found by the nemesis
// (seed 68): node 4 reported first, after its restart, and was not told
// until its next full report.
func TestServiceFindsALearnerRemovedWhileAway(t *testing.T) {
	withLearner := newDesc(7, "a", "m", []uint64{1, 2, 3}, []uint64{4}, 3)
	without := newDesc(7, "a", "m", []uint64{1, 2, 3}, nil, 4)
	without.NextReplicaId = withLearner.NextReplicaId

	for _, c := range []struct {
		name        string
		leaderFirst bool // else node 4 is told on the heartbeat after its report
	}{
		{name: "node reports first", leaderFirst: false},
		{name: "leader reports first", leaderFirst: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newServiceEnv(t)
			e.fourNodes()
			beat := func(node uint64, reports ...*pb.RangeReport) []*pb.RemovedReplica {
				t.Helper()
				resp, err := e.svc.Heartbeat(e.ctx, &pb.HeartbeatRequest{NodeId: node, Ranges: reports})
				if err != nil {
					t.Fatalf("heartbeat from n%d: %v", node, err)
				}
				return resp.Removed
			}
			leaderReport := &pb.RangeReport{Descriptor_: without, LeaderNodeId: 1, IsLeader: true}
			learnerReport := &pb.RangeReport{Descriptor_: withLearner}

			if c.leaderFirst {
				beat(1, leaderReport)
			}
			got := beat(4, learnerReport)
			if !c.leaderFirst {
				if len(got) != 0 {
					t.Fatalf("told %v before placement knew of the removal", got)
				}
				if removed := beat(1, leaderReport); len(removed) != 0 {
					t.Fatalf("the leader was told %v", removed)
				}
				// Node 4's next heartbeat reports nothing new.
				got = beat(4)
			}
			if len(got) != 1 || got[0].RangeId != 7 || got[0].ReplicaId != 4 {
				t.Fatalf("node 4 was told %v, want range 7's replica 4 removed", got)
			}
			if again := beat(4); len(again) != 0 {
				t.Fatalf("node 4 was told again: %v", again)
			}
			// The members, one of them still on the old descriptor, are never told.
			for _, n := range []uint64{2, 3} {
				if removed := beat(n, &pb.RangeReport{Descriptor_: withLearner, LeaderNodeId: 1}); len(removed) != 0 {
					t.Fatalf("member n%d was told %v", n, removed)
				}
			}
		})
	}
}

// TestServiceForgetsADecommissionedNode: a node that left the cluster and
// stopped before it heard of its removed replicas is forgotten once it is
// decommissioned; what placement remembered of it would otherwise stay until
// placement's leadership moves.
func TestServiceForgetsADecommissionedNode(t *testing.T) {
	e := newServiceEnv(t)
	e.fourLiveNodes()
	if _, err := e.svc.Leave(e.ctx, 4); err != nil {
		t.Fatal(err)
	}
	e.step() // moves n4's replicas away
	e.expectCalls("move r2 4->1", "move r3 4->2", "move r4 4->3")

	// n4 is shut down: only the others report the ranges without it.
	e.heartbeat(1, 2, 3)
	e.svc.mu.Lock()
	_, told := e.svc.mu.stale.found[4]
	e.svc.mu.Unlock()
	if !told {
		t.Fatal("placement did not find n4's removed replicas (the test no longer sets up what it checks)")
	}
	e.step()
	if got := e.store.record(t, 4).GetState(); got != pb.NodeRecord_DECOMMISSIONED {
		t.Fatalf("n4 is %v with no replica left", got)
	}
	e.svc.mu.Lock()
	remembered := rememberedNodes(e.svc.mu.stale)
	_, kept := e.svc.mu.stale.found[4]
	e.svc.mu.Unlock()
	if kept || remembered != 3 {
		t.Fatalf("after n4 was decommissioned: n4 kept %v, %d nodes remembered, want 3", kept, remembered)
	}
}

// rememberedNodes returns how many nodes s remembers anything of.
func rememberedNodes(s *staleReplicas) int {
	seen := map[uint64]bool{}
	for node := range s.found {
		seen[node] = true
	}
	for _, byNode := range s.reported {
		for node := range byNode {
			seen[node] = true
		}
	}
	return len(seen)
}

package replica

import (
	"context"
	"errors"
	"slices"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// TestChangeOnAStaleDescriptorChangesNothing: a membership change decided
// on a descriptor that changed before it applied is refused on every
// replica, and leaves the Raft configuration as it was. Found by the
// nemesis (seed 76 or a neighbour): the refusal was applied as an empty
// ConfChangeV2, which Raft reads as "leave the joint configuration", and
// every replica panicked ("can't leave a non-joint config").
func TestChangeOnAStaleDescriptorChangesNothing(t *testing.T) {
	desc := testDescriptor(1, "", "")
	desc.NextReplicaId = 4
	g := newTestGroup(t, Config{}, desc)
	g.cut[4] = true // the learner's node does not exist: drop its messages
	g.campaign(1)

	change := func(cc raftpb.ConfChangeV2, next *pb.RangeDescriptor) (*pb.RangeDescriptor, error) {
		var got *pb.RangeDescriptor
		var err error
		g.do(func() { got, err = g.reps[1].ChangeReplicas(context.Background(), cc, next) })
		return got, err
	}
	withLearner := func(gen uint64) *pb.RangeDescriptor {
		d := proto.Clone(desc).(*pb.RangeDescriptor)
		d.Replicas = append(d.Replicas, &pb.ReplicaDescriptor{NodeId: 4, ReplicaId: 4, Type: pb.ReplicaDescriptor_LEARNER})
		d.NextReplicaId, d.Generation = 5, gen
		return d
	}
	addLearner := raftpb.ConfChangeV2{Changes: []raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddLearnerNode, NodeID: 4}}}

	// Both a simple change and one that would enter a joint configuration.
	promote := raftpb.ConfChangeV2{Changes: []raftpb.ConfChangeSingle{
		{Type: raftpb.ConfChangeAddNode, NodeID: 4}, {Type: raftpb.ConfChangeRemoveNode, NodeID: 3},
	}}
	for _, cc := range []raftpb.ConfChangeV2{addLearner, promote} {
		_, err := change(cc, withLearner(desc.Generation+2))
		var dc *DescriptorChangedError
		if !errors.As(err, &dc) || dc.Expected != desc.Generation+1 || dc.Actual != desc.Generation {
			t.Fatalf("change on a stale descriptor: %v, want DescriptorChangedError", err)
		}
		for id := uint64(1); id <= 3; id++ {
			r := g.reps[id]
			cfg := raftConfig(r)
			if !slices.Equal(cfg.Voters[0].Slice(), []uint64{1, 2, 3}) || len(cfg.Voters[1]) != 0 || len(cfg.Learners) != 0 {
				t.Fatalf("replica %d: configuration %s after a refused change", id, cfg)
			}
			if !proto.Equal(r.Descriptor(), desc) {
				t.Fatalf("replica %d: descriptor %v after a refused change", id, r.Descriptor())
			}
		}
	}

	// The range still takes a change decided on its descriptor.
	got, err := change(addLearner, withLearner(desc.Generation+1))
	if err != nil || !proto.Equal(got, withLearner(desc.Generation+1)) {
		t.Fatalf("change on the current descriptor: %v, %v", got, err)
	}
	for id := uint64(1); id <= 3; id++ {
		if cfg := raftConfig(g.reps[id]); len(cfg.Learners) != 1 || !isLearner(cfg, 4) {
			t.Fatalf("replica %d: configuration %s, want learner 4", id, cfg)
		}
	}
}

// raftConfig returns r's Raft configuration.
func raftConfig(r *Replica) tracker.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.rn.Status().Config
}

func isLearner(cfg tracker.Config, id uint64) bool {
	_, ok := cfg.Learners[id]
	return ok
}

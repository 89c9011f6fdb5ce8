package replica

import (
	"bytes"
	"fmt"

	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// split applies a SplitRange: the descriptor shrinks to [start, split_key)
// and the right-hand range's initial state is written in the same batch, so
// every replica creates the right-hand replica at the same log position.
// The right-hand range starts with the left's replicas (same replica IDs:
// they are per range), its last revision (so revisions of its keys keep
// increasing) and an already-applied log at the bootstrap position, like a
// bootstrapped range.
func (sm *stateMachine) split(s *pb.SplitRange) Result {
	d := sm.desc
	if s.ExpectedGeneration != d.Generation {
		return Result{Err: &DescriptorChangedError{RangeID: d.RangeId, Expected: s.ExpectedGeneration, Actual: d.Generation}}
	}
	if bytes.Compare(s.SplitKey, d.StartKey) <= 0 || (len(d.EndKey) > 0 && bytes.Compare(s.SplitKey, d.EndKey) >= 0) {
		return Result{Err: &KeyOutOfRangeError{RangeID: d.RangeId, Key: s.SplitKey}}
	}
	for _, r := range d.Replicas {
		if r.Type != pb.ReplicaDescriptor_VOTER {
			return Result{Err: fmt.Errorf("range %d: cannot split while replica %d is a learner", d.RangeId, r.ReplicaId)}
		}
	}
	left := proto.Clone(d).(*pb.RangeDescriptor)
	left.EndKey = append([]byte(nil), s.SplitKey...)
	left.Generation++
	right := proto.Clone(d).(*pb.RangeDescriptor)
	right.RangeId = s.RightRangeId
	right.StartKey = append([]byte(nil), s.SplitKey...)
	right.Generation = left.Generation
	if err := putProto(sm.b, DescriptorKey(left.RangeId), left); err != nil {
		return Result{Err: err}
	}
	if err := writeInitialState(sm.b, right, sm.lastRevision); err != nil {
		return Result{Err: err}
	}
	sm.desc = left
	sm.splits = append(sm.splits, right)
	return Result{Left: left, Right: right}
}

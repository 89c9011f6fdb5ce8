package node

import (
	"fmt"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
	replica "github.com/raftrix/raftrixdb/range"
)

// Read-only hooks for in-process invariant checks (internal/nemesis). They
// scan replica state, so nothing on the request path uses them. The caller
// must not call them concurrently with or after Stop: the engine is closed
// then.

// RangeHash is a replica's state hash and the applied index it reflects.
type RangeHash struct {
	Applied uint64
	Hash    uint64
}

// StateHashes returns the state hash of every local replica by range ID.
// Replicas of one range at the same applied index must have equal hashes.
func (n *Node) StateHashes() (map[uint64]RangeHash, error) {
	out := make(map[uint64]RangeHash)
	for _, r := range n.allReplicas() {
		applied, h, err := r.StateHash()
		if err != nil {
			return nil, fmt.Errorf("range %d: state hash: %w", r.RangeID(), err)
		}
		out[r.RangeID()] = RangeHash{Applied: applied, Hash: h}
	}
	return out, nil
}

// CommittedTerms returns (index, term) of the committed log positions the
// local replica of rangeID still holds, from index from on, at most limit of
// them. It returns nil if the node has no replica of the range.
func (n *Node) CommittedTerms(rangeID, from uint64, limit int) ([]replica.IndexTerm, error) {
	r := n.replica(rangeID)
	if r == nil {
		return nil, nil
	}
	return r.CommittedTerms(from, limit)
}

// RangeDescriptors returns the descriptors of the local replicas ordered by
// start key.
func (n *Node) RangeDescriptors() []*pb.RangeDescriptor {
	rs := n.allReplicas()
	out := make([]*pb.RangeDescriptor, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.Descriptor())
	}
	return out
}

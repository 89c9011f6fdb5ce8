package node

import (
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
	replica "github.com/raftrix/raftrixdb/range"
)

// Hooks for the external tests of this package.

// LocalReplica returns the node's replica of a range, or nil.
func (n *Node) LocalReplica(rangeID uint64) *replica.Replica { return n.replica(rangeID) }

// CreateReplicaForSnapshot is createReplica, which an incoming snapshot
// calls.
func (n *Node) CreateReplicaForSnapshot(desc *pb.RangeDescriptor) (*replica.Replica, error) {
	return n.createReplica(desc)
}

package node

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
	replica "github.com/raftrix/raftrixdb/range"
)

// Hooks for the external tests of this package.

// LocalReplica returns the node's replica of a range, or nil.
func (n *Node) LocalReplica(rangeID uint64) *replica.Replica { return n.replica(rangeID) }

// SystemRangeID returns the ID of the range holding the system keys, as
// this node's replicas see it (0 if it holds none).
func (n *Node) SystemRangeID() uint64 {
	if r := n.replicaForKey(systemPrefix); r != nil {
		return r.RangeID()
	}
	return 0
}

// CreateReplicaForSnapshot is createReplica, which an incoming snapshot
// calls.
func (n *Node) CreateReplicaForSnapshot(desc *pb.RangeDescriptor) (*replica.Replica, error) {
	return n.createReplica(desc)
}

// TxnRecords counts the transaction records in the node's engine, of every
// range it holds.
func (n *Node) TxnRecords() (int, error) {
	lo, hi := replica.TxnRecordSpan(nil, nil)
	it, err := n.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return 0, err
	}
	count := 0
	for it.First(); it.Valid(); it.Next() {
		count++
	}
	return count, it.Close()
}

// AddLearner adds a learner of rangeID on node to, as the first steps of a
// move do, and leaves it there (as a move that fails after them does). The
// node must hold the range's leader.
func (n *Node) AddLearner(ctx context.Context, rangeID, to uint64) (uint64, error) {
	r := n.replica(rangeID)
	if r == nil {
		return 0, fmt.Errorf("node %d has no replica of range %d", n.id, rangeID)
	}
	id, _, err := n.addLearner(ctx, r, r.Descriptor(), to)
	return id, err
}

// MarkDestroying registers desc as a replica being destroyed, as
// destroyReplica does while it deletes the replica's data, until undo.
func (n *Node) MarkDestroying(desc *pb.RangeDescriptor) (undo func()) {
	n.createMu.Lock()
	n.destroying[desc.RangeId] = desc
	n.createMu.Unlock()
	return func() {
		n.createMu.Lock()
		delete(n.destroying, desc.RangeId)
		n.createMu.Unlock()
	}
}

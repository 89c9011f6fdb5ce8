package node

import (
	"fmt"

	"go.etcd.io/raft/v3/raftpb"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
	replica "github.com/raftrix/raftrixdb/range"
)

// A node that was down or cut off while one of its replicas was removed
// from the range never applies the removal, and nobody destroys the replica
// (the mover's DestroyReplica call failed). The replica stays behind with
// its old configuration, forever campaigning (pre-vote keeps it from
// disrupting anyone) and holding stale data. When it sends a message to a
// member of the range, that member's descriptor shows the sender removed:
// the sender's replica ID is below next_replica_id and not listed. IDs are
// never reused, so a replica ID that a committed descriptor has allocated
// and no longer lists can never be a member again. The member says so in
// its ack (removed_replica), and the sender destroys the replica. A stale
// replica that sends nothing (it was quiesced when it was cut off, or it
// is a learner, which never campaigns) is found by placement instead: its
// node's range report carries the old descriptor, and once placement has
// also heard of the removal, the node's next heartbeat answer lists it as
// removed (placement/stale_replicas.go).
//
// Destroying it deletes the stale replica's span, which is safe: local
// replicas never overlap (createReplica refuses overlapping snapshots), so
// no other local replica holds data in that span.

// removedReplicaError is the step error for a message from a replica that
// the receiver's descriptor shows removed.
type removedReplicaError struct {
	rangeID, fromReplica uint64
	generation           uint64
}

func (e *removedReplicaError) Error() string {
	return fmt.Sprintf("replica %d was removed from range %d (descriptor generation %d)", e.fromReplica, e.rangeID, e.generation)
}

// checkSender returns a *removedReplicaError if m comes from a replica that
// desc shows removed.
func checkSender(desc *pb.RangeDescriptor, m *raftpb.Message) error {
	if !replica.ReplicaRemoved(desc, m.From) {
		return nil
	}
	return &removedReplicaError{rangeID: desc.RangeId, fromReplica: m.From, generation: desc.Generation}
}

// replicaRemoved handles an ack saying that this node's replica replicaID
// of rangeID was removed from the range: it destroys the replica, unless it
// has since been replaced by a newer one.
func (n *Node) replicaRemoved(rangeID, replicaID uint64) {
	r := n.replica(rangeID)
	if r == nil || r.ReplicaID() != replicaID {
		return
	}
	n.logger.Info("replica was removed from its range while away; destroying it", "range", rangeID, "replica", replicaID)
	// Not on the stream's goroutine: destroying waits for the replica's
	// work to finish and syncs the engine.
	go func() {
		if err := n.destroyReplica(rangeID, replicaID); err != nil {
			n.logger.Error("destroy removed replica", "range", rangeID, "replica", replicaID, "error", err)
		}
	}()
}

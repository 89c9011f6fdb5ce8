package node

import (
	"fmt"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	replica "github.com/raftrix/raftrixdb/range"
)

// A node can lack a replica that the range's leader lists: the node
// installed a snapshot of the left-hand side of a split instead of applying
// the split, so it never created the right-hand side; or it was added as a
// learner and its first snapshot was lost. Raft cannot repair that by itself:
// a replica that does not exist never answers, and a leader probing a silent
// follower waits for an answer before sending more. So the receiver says so
// in its ack (no_replica), and the leader streams the replica a snapshot,
// which creates it (createReplica) unless the node has since destroyed that
// replica (a tombstone) or still holds a replica overlapping its span.

// missingReplicaError is the step error for a message to a range this node
// holds no replica of.
type missingReplicaError struct {
	nodeID, rangeID, toReplica uint64
	fromLeader                 bool
}

func (e *missingReplicaError) Error() string {
	return fmt.Sprintf("node %d has no replica of range %d", e.nodeID, e.rangeID)
}

// fromLeader reports whether only a leader sends messages of type t:
// appends and heartbeats. A missing replica asks only a leader for a
// snapshot; a candidate's vote request needs no answer from it.
func fromLeader(t raftpb.MessageType) bool {
	return t == raftpb.MsgApp || t == raftpb.MsgHeartbeat
}

// shouldReportMissing reports whether the ack for e should ask the sender
// for a snapshot: the message came from a leader and addressed a replica
// this node has not destroyed. A leader that still lists a destroyed
// replica is stale and must get nothing that could help it to a quorum.
func (n *Node) shouldReportMissing(e *missingReplicaError) bool {
	if !e.fromLeader {
		return false
	}
	dead, err := replica.Tombstone(n.db, e.rangeID)
	return err == nil && e.toReplica > dead
}

// snapshotRetryInterval spaces the snapshots a leader sends to one missing
// replica: a snapshot is refused while the receiver still holds an
// overlapping replica (it has yet to apply the split), and every heartbeat
// reports the replica missing again.
const snapshotRetryInterval = time.Second

// replicaMissing handles an ack saying that nodeID holds no replica
// replicaID of rangeID: if this node leads the range and its descriptor
// still lists that replica on that node, it streams the replica a snapshot.
func (n *Node) replicaMissing(rangeID, replicaID, nodeID uint64) {
	r := n.replica(rangeID)
	if r == nil || !r.IsLeader() || replica.NodeOfReplica(r.Descriptor(), replicaID) != nodeID {
		return
	}
	if !n.trans.claimSnapshotRetry(rangeID, replicaID, n.cfg.Clock.Now()) {
		return
	}
	n.logger.Info("follower has no replica; sending a snapshot", "range", rangeID, "replica", replicaID, "node", nodeID)
	m := raftpb.Message{Type: raftpb.MsgSnap, From: r.ReplicaID(), To: replicaID, Term: r.Status().Term}
	n.trans.sendSnapshot(r, nodeID, m)
}

// claimSnapshotRetry reports whether a snapshot to a missing replica may be
// sent now, and if so records it.
func (t *transport) claimSnapshotRetry(rangeID, replicaID uint64, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := [2]uint64{rangeID, replicaID}
	if last, ok := t.mu.missingSnapAt[key]; ok && now.Sub(last) < snapshotRetryInterval {
		return false
	}
	if t.mu.missingSnapAt == nil {
		t.mu.missingSnapAt = map[[2]uint64]time.Time{}
	}
	// Forget old entries, so the map stays small on a long-running node.
	for k, at := range t.mu.missingSnapAt {
		if now.Sub(at) >= snapshotRetryInterval {
			delete(t.mu.missingSnapAt, k)
		}
	}
	t.mu.missingSnapAt[key] = now
	return true
}

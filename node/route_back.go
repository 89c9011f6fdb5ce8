package node

import (
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
	replica "github.com/raftrix/raftrixdb/range"
)

// Raft messages are addressed to replica IDs, and the transport finds the
// node of a replica in the local descriptor. A replica that has not yet
// applied a change adding a member does not find the new member there, yet
// it must answer it: if the new member leads, its heartbeats carry the
// commit index only up to what the follower acknowledged, so an unanswered
// follower would never apply the change that names its leader (nemesis seed
// 70). So the transport remembers which node each such replica's messages
// came from and sends the answers back there.
//
// Replica IDs are never reused within a range, so a learned route never
// goes stale; a range's routes are forgotten when its local replica is
// destroyed.

// learnRoute records that replica replicaID of a range sent from nodeID,
// when the local descriptor does not list it.
func (t *transport) learnRoute(desc *pb.RangeDescriptor, replicaID, nodeID uint64) {
	if replica.NodeOfReplica(desc, replicaID) != 0 || nodeID == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.routes == nil {
		t.mu.routes = map[uint64]map[uint64]uint64{}
	}
	byReplica := t.mu.routes[desc.RangeId]
	if byReplica == nil {
		byReplica = map[uint64]uint64{}
		t.mu.routes[desc.RangeId] = byReplica
	}
	byReplica[replicaID] = nodeID
}

// nodeOf returns the node holding replicaID of desc's range: from desc, or
// else from a learned route; 0 if neither knows it.
func (t *transport) nodeOf(desc *pb.RangeDescriptor, replicaID uint64) uint64 {
	if id := replica.NodeOfReplica(desc, replicaID); id != 0 {
		return id
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mu.routes[desc.RangeId][replicaID]
}

// forgetRoutes drops the learned routes of a range whose replica is gone.
func (t *transport) forgetRoutes(rangeID uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.mu.routes, rangeID)
}

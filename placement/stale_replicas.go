package placement

import (
	"sort"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// staleReplicas finds replicas that their range removed while their node
// was away (down, or cut off) and that nobody destroyed: the heartbeat's
// answer tells the node to destroy them.
//
// Such a replica is seen in two reports that arrive in either order: its
// own node's report of the old descriptor, and the range leader's report
// of the descriptor without it. Checking only the node's report against the
// directory misses the case where the node reports first; after a restart
// of the node, or a change of placement leader (the directory starts
// empty), that is the usual order, and the node reports an unchanged range
// again only in its next full report. A learner left by a failed move
// depends on this path alone: it never campaigns, so no member can answer
// its messages "removed" (node/removed_replica.go). So the service
// remembers what each node last reported of each range and checks it again
// whenever a report of that range arrives; the node hears of the removal on
// its next heartbeat, whichever report came last.
type staleReplicas struct {
	reported map[uint64]map[uint64]*pb.RangeDescriptor // range -> node -> descriptor its replica holds
	found    map[uint64]map[uint64]uint64              // node -> range -> removed replica, not yet told
}

func newStaleReplicas() *staleReplicas {
	return &staleReplicas{reported: map[uint64]map[uint64]*pb.RangeDescriptor{}, found: map[uint64]map[uint64]uint64{}}
}

// report records that nodeID's replica holds desc, then checks every
// replica reported for the range against the directory (which has already
// applied the report).
func (s *staleReplicas) report(dir *Directory, nodeID uint64, desc *pb.RangeDescriptor) {
	byNode := s.reported[desc.RangeId]
	if byNode == nil {
		byNode = map[uint64]*pb.RangeDescriptor{}
		s.reported[desc.RangeId] = byNode
	}
	byNode[nodeID] = desc
	for node, held := range byNode {
		id, ok := dir.RemovedReplica(held, node)
		if !ok {
			continue
		}
		// Told once: if the answer is lost, the node's failed heartbeat
		// makes it report every range again, and this finds it again.
		delete(byNode, node)
		if s.found[node] == nil {
			s.found[node] = map[uint64]uint64{}
		}
		s.found[node][desc.RangeId] = id
	}
}

// take returns, in range order, the removed replicas found on nodeID since
// it was last told, and forgets them.
func (s *staleReplicas) take(nodeID uint64) []*pb.RemovedReplica {
	found := s.found[nodeID]
	if len(found) == 0 {
		return nil
	}
	delete(s.found, nodeID)
	out := make([]*pb.RemovedReplica, 0, len(found))
	for rangeID, replicaID := range found {
		out = append(out, &pb.RemovedReplica{RangeId: rangeID, ReplicaId: replicaID})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RangeId < out[j].RangeId })
	return out
}

// forget drops what is remembered of nodeID. A decommissioned node holds no
// replica in the directory; if it still runs and holds a removed one, its
// next full report finds it again.
func (s *staleReplicas) forget(nodeID uint64) {
	delete(s.found, nodeID)
	for _, byNode := range s.reported {
		delete(byNode, nodeID)
	}
}

package node

import (
	"maps"
	"sort"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// The node's view of its peers' addresses: the static --peers of a
// bootstrapped cluster, extended by what placement reports in heartbeat
// answers (nodes that joined later).

func (n *Node) peerAddr(id uint64) (string, bool) {
	n.peersMu.RLock()
	defer n.peersMu.RUnlock()
	addr, ok := n.peers[id]
	return addr, ok
}

func (n *Node) peersSnapshot() map[uint64]string {
	n.peersMu.RLock()
	defer n.peersMu.RUnlock()
	return maps.Clone(n.peers)
}

// learnPeers adds or updates peer addresses; it never forgets a peer, since
// a range may still name it.
func (n *Node) learnPeers(nodes []*pb.NodeAddress) {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	for _, a := range nodes {
		if a.NodeId != 0 && a.Addr != "" {
			n.peers[a.NodeId] = a.Addr
		}
	}
}

// holderCandidates are the nodes to ask about a range this node holds no
// replica of: other nodes, lowest IDs first (the bootstrap nodes hold the
// most).
func (n *Node) holderCandidates() []uint64 {
	var ids []uint64
	for id := range n.peersSnapshot() {
		if id != n.id {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

func (n *Node) peerAddrOrEmpty(id uint64) string {
	addr, _ := n.peerAddr(id)
	return addr
}

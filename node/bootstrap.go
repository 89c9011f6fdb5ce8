package node

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/raftrix/raftrixdb/placement"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
	replica "github.com/raftrix/raftrixdb/range"
)

// bootstrapIfEmpty creates the initial ranges when the engine holds no
// replica and this node is one of the three lowest node IDs in Peers. Each
// of the three nodes writes the same descriptors and initial Raft state on
// its own, as etcd members do from a static initial cluster, so no node has
// to wait for another to start.
func (n *Node) bootstrapIfEmpty() error {
	it, err := n.db.NewIter(&pebble.IterOptions{LowerBound: []byte{0x01}, UpperBound: []byte{0x02}})
	if err != nil {
		return err
	}
	hasState := it.First()
	if err := it.Close(); err != nil {
		return err
	}
	if hasState {
		return nil
	}
	voters := bootstrapNodes(n.cfg.Peers)
	isVoter := false
	for _, id := range voters {
		isVoter = isVoter || id == n.id
	}
	if !isVoter {
		return nil
	}
	descs, err := InitialDescriptors(voters, n.cfg.InitialRanges, n.cfg.SplitKeys)
	if err != nil {
		return err
	}
	b := n.db.NewBatch()
	defer b.Close()
	for _, d := range descs {
		if err := replica.WriteInitialState(b, d); err != nil {
			return err
		}
	}
	// Placement's durable state lives in the system range (the last one):
	// the ID counters, which never hand out an ID twice, and the node
	// registry, seeded with the static peers.
	var maxNode uint64
	for id, addr := range n.cfg.Peers {
		maxNode = max(maxNode, id)
		rec, err := proto.Marshal(&pb.NodeRecord{NodeId: id, Addr: addr})
		if err != nil {
			return err
		}
		if err := replica.WriteSystemValue(b, placement.NodeKey(id), rec); err != nil {
			return err
		}
	}
	if err := replica.WriteSystemValue(b, placement.NodeIDCounterKey, []byte(strconv.FormatUint(maxNode, 10))); err != nil {
		return err
	}
	if err := replica.WriteSystemValue(b, rangeIDCounterKey, []byte(strconv.Itoa(len(descs)))); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	n.logger.Info("bootstrapped ranges", "ranges", len(descs), "voters", voters)
	return nil
}

// bootstrapNodes returns the (up to) three lowest node IDs in peers.
func bootstrapNodes(peers map[uint64]string) []uint64 {
	ids := make([]uint64, 0, len(peers))
	for id := range peers {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	if len(ids) > 3 {
		ids = ids[:3]
	}
	return ids
}

// InitialDescriptors lays out the first ranges: split at splitKeys if given,
// otherwise count ranges splitting the key space evenly by the first two
// bytes of the key, plus the system range [0xFF 0xFF, end) as the last one.
// Range i+1 has replica IDs 1..len(voters) on voters.
func InitialDescriptors(voters []uint64, count int, splitKeys [][]byte) ([]*pb.RangeDescriptor, error) {
	if len(splitKeys) == 0 {
		if count < 1 || count > 1<<16 {
			return nil, fmt.Errorf("initial range count must be in [1, 65536], got %d", count)
		}
		for i := 1; i < count; i++ {
			v := uint32(i) * (1 << 16) / uint32(count)
			splitKeys = append(splitKeys, []byte{byte(v >> 8), byte(v)})
		}
	}
	// The system key space is always a range of its own: the placement
	// service's state lives there, replicated by its own Raft group.
	splitKeys = withSystemSplit(splitKeys)
	for i, k := range splitKeys {
		if len(k) == 0 {
			return nil, fmt.Errorf("split key %d is empty", i)
		}
		if i > 0 && bytes.Compare(splitKeys[i-1], k) >= 0 {
			return nil, fmt.Errorf("split keys must be strictly increasing: %q then %q", splitKeys[i-1], k)
		}
	}
	var replicas []*pb.ReplicaDescriptor
	for i, id := range voters {
		replicas = append(replicas, &pb.ReplicaDescriptor{NodeId: id, ReplicaId: uint64(i + 1)})
	}
	var descs []*pb.RangeDescriptor
	var start []byte
	for i := 0; i <= len(splitKeys); i++ {
		var end []byte
		if i < len(splitKeys) {
			end = splitKeys[i]
		}
		descs = append(descs, &pb.RangeDescriptor{
			RangeId:       uint64(i + 1),
			StartKey:      start,
			EndKey:        end,
			Replicas:      replicas,
			Generation:    1,
			NextReplicaId: uint64(len(replicas) + 1),
		})
		start = end
	}
	return descs, nil
}

// withSystemSplit returns splitKeys with the system prefix as the last split,
// dropping any split inside the system key space.
func withSystemSplit(splitKeys [][]byte) [][]byte {
	out := make([][]byte, 0, len(splitKeys)+1)
	for _, k := range splitKeys {
		if bytes.Compare(k, systemPrefix) < 0 {
			out = append(out, k)
		}
	}
	return append(out, systemPrefix)
}

package nemesis

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sort"

	"google.golang.org/grpc/status"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// systemPrefix starts the system key space, which the nemesis never splits.
var systemPrefix = []byte{0xff, 0xff}

func isSystemKey(k []byte) bool { return bytes.HasPrefix(k, systemPrefix) }

// admin performs one Admin RPC fault (transfer-leader, split, move) through a
// live node and returns a description of what it did for the timeline. Its
// choices depend only on f.pick and on the descriptors the node reports; its
// outcome may be an error (a partition, a crashed leader), which is counted,
// never a violation.
func (nm *nemesis) admin(ctx context.Context, f fault) string {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	rng := rand.New(rand.NewPCG(f.pick, 2))
	var live []uint64
	for _, id := range nm.c.NodeIDs() {
		if nm.c.Running(id) {
			live = append(live, id)
		}
	}
	if len(live) == 0 {
		return fmt.Sprintf("%s: no live node", f.kind)
	}
	via := live[rng.IntN(len(live))]
	resp, err := nm.c.Admin(via).ListRanges(ctx, &pb.ListRangesRequest{})
	if err != nil {
		return fmt.Sprintf("%s via node %d: list ranges: %s", f.kind, via, errCode(err))
	}
	descs := rangeDescriptors(resp)
	if len(descs) == 0 {
		return fmt.Sprintf("%s via node %d: no ranges", f.kind, via)
	}
	var what string
	switch f.kind {
	case TransferLeader:
		d := descs[rng.IntN(len(descs))]
		voters := voterNodes(d)
		if len(voters) == 0 {
			return fmt.Sprintf("%s range %d via node %d: no voters", f.kind, d.RangeId, via)
		}
		to := voters[rng.IntN(len(voters))]
		what = fmt.Sprintf("%s range %d to node %d via node %d", f.kind, d.RangeId, to, via)
		_, err = nm.c.Admin(via).TransferLeader(ctx, &pb.TransferLeaderRequest{RangeId: d.RangeId, ToNode: to})
	case Split:
		var user []*pb.RangeDescriptor
		for _, d := range descs {
			if !isSystemKey(d.StartKey) {
				user = append(user, d)
			}
		}
		if len(user) == 0 {
			return fmt.Sprintf("%s via node %d: no user range", f.kind, via)
		}
		first := rng.IntN(len(user))
		var key []byte
		var d *pb.RangeDescriptor
		for i := 0; i < len(user) && key == nil; i++ {
			d = user[(first+i)%len(user)]
			key = splitKey(rng, d.StartKey, d.EndKey)
		}
		if key == nil {
			return fmt.Sprintf("%s via node %d: no range wide enough", f.kind, via)
		}
		what = fmt.Sprintf("%s range %d at %q via node %d", f.kind, d.RangeId, key, via)
		_, err = nm.c.Admin(via).SplitRange(ctx, &pb.SplitRangeRequest{Key: key})
	case Move:
		all := nm.c.NodeIDs()
		first := rng.IntN(len(descs))
		for i := 0; i < len(descs); i++ {
			d := descs[(first+i)%len(descs)]
			voters := voterNodes(d)
			var free []uint64
			for _, id := range all {
				if !holds(d, id) {
					free = append(free, id)
				}
			}
			if len(voters) == 0 || len(free) == 0 {
				continue
			}
			from, to := voters[rng.IntN(len(voters))], free[rng.IntN(len(free))]
			what = fmt.Sprintf("%s range %d from node %d to node %d via node %d", f.kind, d.RangeId, from, to, via)
			_, err = nm.c.Admin(via).MoveReplica(ctx, &pb.MoveReplicaRequest{RangeId: d.RangeId, FromNode: from, ToNode: to})
			break
		}
		if what == "" {
			return fmt.Sprintf("%s via node %d: every node holds every range", f.kind, via)
		}
	default:
		return ""
	}
	if err != nil {
		return what + ": " + errCode(err)
	}
	nm.mu.Lock()
	nm.succeeded[f.kind]++
	nm.mu.Unlock()
	return what + ": ok"
}

func errCode(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Code().String()
	}
	return err.Error()
}

// rangeDescriptors returns a node's descriptors ordered by start key.
func rangeDescriptors(resp *pb.ListRangesResponse) []*pb.RangeDescriptor {
	var out []*pb.RangeDescriptor
	for _, ri := range resp.Ranges {
		if ri.Descriptor_ != nil {
			out = append(out, ri.Descriptor_)
		}
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].StartKey, out[j].StartKey) < 0 })
	return out
}

func voterNodes(d *pb.RangeDescriptor) []uint64 {
	var out []uint64
	for _, r := range d.Replicas {
		if r.Type == pb.ReplicaDescriptor_VOTER {
			out = append(out, r.NodeId)
		}
	}
	return out
}

func holds(d *pb.RangeDescriptor, node uint64) bool {
	for _, r := range d.Replicas {
		if r.NodeId == node {
			return true
		}
	}
	return false
}

// splitKey draws a key strictly inside [start, end) (end empty: the end of
// the key space), outside the system key space and not equal to start, or
// returns nil if the range is too narrow. Where the range spans several
// two-byte prefixes the key is spread over them; otherwise it extends start.
func splitKey(rng *rand.Rand, start, end []byte) []byte {
	prefix := func(k []byte, empty uint32) uint32 {
		if len(k) == 0 {
			return empty
		}
		v := uint32(k[0]) << 8
		if len(k) > 1 {
			v |= uint32(k[1])
		}
		return v
	}
	lo, hi := prefix(start, 0), min(prefix(end, 0xffff), 0xffff)
	var key []byte
	if hi > lo+1 {
		v := lo + 1 + uint32(rng.IntN(int(hi-lo-1)))
		key = []byte{byte(v >> 8), byte(v)}
	} else {
		key = append([]byte(nil), start...)
		key = append(key, byte(1+rng.IntN(255)))
	}
	for n := rng.IntN(4); n > 0; n-- {
		key = append(key, byte(rng.IntN(256)))
	}
	if bytes.Compare(key, start) <= 0 || (len(end) > 0 && bytes.Compare(key, end) >= 0) || isSystemKey(key) {
		return nil
	}
	return key
}

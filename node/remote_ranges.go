package node

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftrix/raftrixdb/placement"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// A transaction coordinated here may touch ranges this node holds no
// replica of: with more than three nodes, replicas spread, and no node need
// hold every range a transaction touches (the nemesis bank workload, 4
// nodes after moves). The coordinator groups the keys by range (RangeFor):
// for a key no local replica holds, the node asks placement (Lookup) and
// remembers the answer, with the range's leader, which onLeader then tries
// first. An answer goes stale when the range splits; a command refused for
// a key outside its range forgets it (forgetRemoteRange), and the
// coordinator retries with a fresh lookup.

// remoteRanges is what this node has learned from placement of ranges it
// holds no replica of.
type remoteRanges struct {
	mu  sync.Mutex
	dir *placement.Directory // guarded by mu
}

func newRemoteRanges() *remoteRanges { return &remoteRanges{dir: placement.NewDirectory()} }

// lookup returns the remembered range holding key and its leader.
func (rr *remoteRanges) lookup(key []byte) (desc *pb.RangeDescriptor, leader uint64, ok bool) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	e := rr.dir.Lookup(key)
	if e == nil {
		return nil, 0, false
	}
	return e.Desc, e.LeaderNodeID, true
}

func (rr *remoteRanges) remember(desc *pb.RangeDescriptor, leader uint64) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	rr.dir.Update(&pb.RangeReport{Descriptor_: desc, LeaderNodeId: leader}, time.Time{})
}

// forget drops the remembered range holding key.
func (rr *remoteRanges) forget(key []byte) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if e := rr.dir.Lookup(key); e != nil {
		rr.dir.Forget(e.Desc.RangeId)
	}
}

// RangeFor implements txn.RangeLookup: the range of the local replica that
// holds key, else the one placement names.
func (n *Node) RangeFor(ctx context.Context, key []byte) (uint64, error) {
	if r := n.replicaForKey(key); r != nil {
		return r.RangeID(), nil
	}
	if desc, _, ok := n.remote.lookup(key); ok {
		return desc.RangeId, nil
	}
	resp, err := n.lookupRange(ctx, key)
	if err != nil {
		return 0, err
	}
	n.remote.remember(resp.Descriptor_, resp.LeaderNodeId)
	return resp.Descriptor_.RangeId, nil
}

// lookupRange asks placement which range holds key and who leads it.
func (n *Node) lookupRange(ctx context.Context, key []byte) (*pb.LookupResponse, error) {
	return onPlacementLeader(ctx, n, &pb.LookupRequest{Key: key}, func() (*pb.LookupResponse, error) {
		e, err := n.placement.Lookup(key)
		if err != nil {
			return nil, status.Error(codes.Unavailable, err.Error())
		}
		return &pb.LookupResponse{Descriptor_: e.Desc, LeaderNodeId: e.LeaderNodeID, LeaderAddr: n.peerAddrOrEmpty(e.LeaderNodeID)}, nil
	}, pb.PlacementClient.Lookup)
}

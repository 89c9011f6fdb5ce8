package node

import (
	"context"
	"sort"
	"time"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// adminServer reports the node's state and its replicas.
type adminServer struct {
	pb.UnimplementedAdminServer
	n *Node
}

func (s *adminServer) NodeStatus(ctx context.Context, _ *pb.NodeStatusRequest) (*pb.NodeStatusResponse, error) {
	n := s.n
	resp := &pb.NodeStatusResponse{
		NodeId:          n.id,
		Addr:            n.Addr(),
		Version:         Version,
		StartedUnix:     n.started.Unix(),
		EngineSizeBytes: int64(n.db.Metrics().DiskSpaceUsage()),
	}
	for _, r := range n.allReplicas() {
		resp.Replicas++
		if r.IsLeader() {
			resp.Leaders++
		}
	}
	for id, addr := range n.peersSnapshot() {
		resp.Peers = append(resp.Peers, &pb.NodeAddress{NodeId: id, Addr: addr})
	}
	sort.Slice(resp.Peers, func(i, j int) bool { return resp.Peers[i].NodeId < resp.Peers[j].NodeId })
	return resp, nil
}

func (s *adminServer) ListRanges(ctx context.Context, _ *pb.ListRangesRequest) (*pb.ListRangesResponse, error) {
	resp := &pb.ListRangesResponse{}
	for _, r := range s.n.allReplicas() {
		st := r.Status()
		resp.Ranges = append(resp.Ranges, &pb.RangeInfo{
			Descriptor_:          st.Descriptor,
			ReplicaId:            st.ReplicaID,
			LeaderNodeId:         st.LeaderNodeID,
			Term:                 st.Term,
			CommitIndex:          st.Commit,
			AppliedIndex:         st.Applied,
			ApproximateSizeBytes: r.ApproximateSize(),
			RaftState:            st.RaftState,
			Quiesced:             r.Quiesced(),
			RaftConfig:           st.RaftConfig,
		})
	}
	return resp, nil
}

func (s *adminServer) SplitRange(ctx context.Context, req *pb.SplitRangeRequest) (*pb.SplitRangeResponse, error) {
	n := s.n
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	if len(req.Key) == 0 && req.RangeId != 0 {
		resp, err := n.splitRangeInMiddle(ctx, req.RangeId)
		return resp, n.toStatus(err)
	}
	if err := n.cfg.Limits.checkKey(req.Key); err != nil {
		return nil, n.toStatus(err)
	}
	if isSystemKey(req.Key) && !isForwarded(ctx) {
		return nil, n.toStatus(invalidf("cannot split inside the system key space"))
	}
	resp, err := n.splitRange(ctx, req.Key)
	return resp, n.toStatus(err)
}

func (s *adminServer) MoveReplica(ctx context.Context, req *pb.MoveReplicaRequest) (*pb.MoveReplicaResponse, error) {
	n := s.n
	if req.RangeId == 0 || req.FromNode == req.ToNode {
		return nil, n.toStatus(invalidf("move needs a range ID and different source and target nodes (source 0: add a replica; target 0: remove one)"))
	}
	ctx, cancel := context.WithTimeout(ctx, catchUpTimeout+10*time.Second)
	defer cancel()
	desc, err := n.moveReplica(ctx, req)
	if err != nil {
		return nil, n.toStatus(err)
	}
	return &pb.MoveReplicaResponse{Descriptor_: desc}, nil
}

func (s *adminServer) TransferLeader(ctx context.Context, req *pb.TransferLeaderRequest) (*pb.TransferLeaderResponse, error) {
	n := s.n
	if req.RangeId == 0 || req.ToNode == 0 {
		return nil, n.toStatus(invalidf("transfer needs a range ID and a target node"))
	}
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	if err := n.transferLeader(ctx, req); err != nil {
		return nil, n.toStatus(err)
	}
	return &pb.TransferLeaderResponse{}, nil
}

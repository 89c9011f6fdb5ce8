package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftrix/raftrixdb/placement"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
	replica "github.com/raftrix/raftrixdb/range"
)

// Placement runs inside every node: each node heartbeats the placement
// leader with its range reports, and the node whose replica leads the system
// range runs the placement service's decisions. Placement's requests are
// served by any node and routed like KV requests to the system range's
// leader.

// placementLoops runs the heartbeat and the decision loops until ctx ends.
func (n *Node) placementLoops(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(2)
	go func() {
		defer wg.Done()
		if !n.cfg.ManualPlacement {
			n.placement.Run(ctx)
		}
	}()
	go func() {
		defer wg.Done()
		t := time.NewTicker(n.cfg.HeartbeatInterval)
		defer t.Stop()
		st := &reportState{prevWrites: map[uint64]uint64{}, sent: map[uint64]reportKey{}}
		last := time.Now()
		for beat := 0; ; beat++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			sys := n.replicaForKey(systemPrefix)
			n.placement.SetLeading(sys != nil && sys.IsLeader())
			elapsed := time.Since(last).Seconds()
			last = time.Now()
			full := beat%placement.FullReportEvery == 0
			hctx, cancel := context.WithTimeout(ctx, n.cfg.HeartbeatInterval*3)
			if err := n.sendHeartbeat(hctx, n.rangeReports(st, elapsed, full)); err != nil {
				n.logger.Debug("placement heartbeat failed", "error", err)
				st.sent = map[uint64]reportKey{} // resend everything next time
			}
			cancel()
		}
	}()
}

// reportState is what the heartbeat loop remembers between heartbeats.
type reportState struct {
	prevWrites map[uint64]uint64    // range -> writes applied at the last heartbeat
	sent       map[uint64]reportKey // what placement last heard of each range
}

// reportKey is the part of a report whose change is worth sending at once.
type reportKey struct {
	generation uint64
	leader     uint64
	isLeader   bool
	hot        bool
}

// rangeReports describes the local replicas for placement: all of them
// (with sizes) on a full report, otherwise only those whose descriptor,
// leadership or load changed. With thousands of idle ranges that keeps
// heartbeats small between full reports.
func (n *Node) rangeReports(st *reportState, elapsed float64, full bool) []*pb.RangeReport {
	var out []*pb.RangeReport
	for _, r := range n.allReplicas() {
		if !r.Initialized() {
			continue
		}
		// Cheap accessors only: this runs for every range every heartbeat,
		// and Raft's full Status copies every follower's progress.
		desc := r.Descriptor()
		_, leaderNode := r.Leader()
		rep := &pb.RangeReport{Descriptor_: desc, LeaderNodeId: leaderNode, IsLeader: r.IsLeader()}
		if rep.IsLeader {
			w := r.Writes()
			if p, ok := st.prevWrites[r.RangeID()]; ok && elapsed > 0 && w >= p {
				rep.WritesPerSecond = float64(w-p) / elapsed
			}
			st.prevWrites[r.RangeID()] = w
		}
		key := reportKey{generation: desc.Generation, leader: leaderNode, isLeader: rep.IsLeader, hot: rep.WritesPerSecond > 0}
		if !full && st.sent[r.RangeID()] == key && !key.hot {
			continue
		}
		if rep.IsLeader && (full || key.hot) {
			rep.SizeBytes = r.ApproximateSize()
		}
		st.sent[r.RangeID()] = key
		out = append(out, rep)
	}
	return out
}

func (n *Node) sendHeartbeat(ctx context.Context, reports []*pb.RangeReport) error {
	req := &pb.HeartbeatRequest{NodeId: n.id, Addr: n.Addr(), Ranges: reports}
	resp, err := n.placementHeartbeat(ctx, req)
	if err != nil && n.cfg.JoinAddr != "" && len(n.holderCandidates()) == 0 {
		// We know no peer yet (a joined node after a restart): ask the node
		// we joined through, which routes it.
		resp, err = n.viaJoinAddr(ctx, func(c pb.PlacementClient) (*pb.HeartbeatResponse, error) { return c.Heartbeat(ctx, req) })
	}
	if err != nil {
		return err
	}
	n.learnPeers(resp.Nodes)
	for _, r := range resp.Removed {
		n.replicaRemoved(r.RangeId, r.ReplicaId)
	}
	return nil
}

func (n *Node) viaJoinAddr(ctx context.Context, call func(pb.PlacementClient) (*pb.HeartbeatResponse, error)) (*pb.HeartbeatResponse, error) {
	conn, err := grpc.NewClient(n.cfg.JoinAddr, n.dialOptions()...)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return call(pb.NewPlacementClient(conn))
}

// onPlacementLeader answers req with local on the placement leader (this
// node, if its system replica leads), or forwards req to it with forward,
// the Placement client method of the request (e.g.
// pb.PlacementClient.Lookup).
func onPlacementLeader[Req, Resp any](ctx context.Context, n *Node, req Req,
	local func() (Resp, error),
	forward func(pb.PlacementClient, context.Context, Req, ...grpc.CallOption) (Resp, error),
) (Resp, error) {
	var resp Resp
	err := n.onLeader(ctx, systemPrefix, func(r *replica.Replica) (err error) {
		if !r.IsLeader() {
			lr, ln := r.Leader()
			return &replica.NotLeaderError{RangeID: r.RangeID(), LeaderReplicaID: lr, LeaderNodeID: ln}
		}
		resp, err = local()
		return err
	}, func(fctx context.Context, c *grpc.ClientConn) (err error) {
		resp, err = forward(pb.NewPlacementClient(c), fctx, req)
		return err
	})
	return resp, err
}

func (n *Node) placementHeartbeat(ctx context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	return onPlacementLeader(ctx, n, req, func() (*pb.HeartbeatResponse, error) {
		return n.placement.Heartbeat(ctx, req)
	}, pb.PlacementClient.Heartbeat)
}

// placementServer serves the Placement service.
type placementServer struct {
	pb.UnimplementedPlacementServer
	n *Node
}

func (s *placementServer) JoinCluster(ctx context.Context, req *pb.JoinClusterRequest) (*pb.JoinClusterResponse, error) {
	n := s.n
	if req.Addr == "" {
		return nil, n.toStatus(invalidf("join needs the new node's address"))
	}
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	resp, err := onPlacementLeader(ctx, n, req, func() (*pb.JoinClusterResponse, error) {
		id, nodes, err := n.placement.Join(ctx, req.Addr)
		if err != nil {
			return nil, placementError(err)
		}
		return &pb.JoinClusterResponse{NodeId: id, Nodes: nodes}, nil
	}, pb.PlacementClient.JoinCluster)
	if err == nil {
		n.learnPeers(resp.Nodes)
	}
	return resp, n.toStatus(err)
}

func (s *placementServer) LeaveCluster(ctx context.Context, req *pb.LeaveClusterRequest) (*pb.LeaveClusterResponse, error) {
	n := s.n
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	resp, err := onPlacementLeader(ctx, n, req, func() (*pb.LeaveClusterResponse, error) {
		rec, err := n.placement.Leave(ctx, req.NodeId)
		if err != nil {
			return nil, placementError(err)
		}
		return &pb.LeaveClusterResponse{Node: rec}, nil
	}, pb.PlacementClient.LeaveCluster)
	return resp, n.toStatus(err)
}

func (s *placementServer) ListNodes(ctx context.Context, req *pb.ListNodesRequest) (*pb.ListNodesResponse, error) {
	n := s.n
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	resp, err := onPlacementLeader(ctx, n, req, func() (*pb.ListNodesResponse, error) {
		nodes, err := n.placement.ListNodes(ctx)
		return &pb.ListNodesResponse{Nodes: nodes}, err
	}, pb.PlacementClient.ListNodes)
	return resp, n.toStatus(err)
}

func (s *placementServer) Heartbeat(ctx context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	n := s.n
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	resp, err := n.placementHeartbeat(ctx, req)
	if err != nil {
		return nil, n.toStatus(placementError(err))
	}
	return resp, nil
}

func (s *placementServer) Lookup(ctx context.Context, req *pb.LookupRequest) (*pb.LookupResponse, error) {
	n := s.n
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	resp, err := n.lookupRange(ctx, req.Key)
	return resp, n.toStatus(err)
}

func placementError(err error) error {
	if errors.Is(err, placement.ErrUnknownNode) {
		return status.Error(codes.NotFound, err.Error())
	}
	return err
}

// placementStore implements placement.Store on the node's own KV API.
type placementStore struct{ n *Node }

var _ placement.Store = placementStore{}

func (s placementStore) kv() *kvServer { return &kvServer{n: s.n, internal: true} }

func (s placementStore) Get(ctx context.Context, key []byte) ([]byte, int64, bool, error) {
	resp, err := s.kv().Get(ownRequest(ctx), &pb.GetRequest{Key: key})
	if err != nil || !resp.Found {
		return nil, 0, false, err
	}
	return resp.Kv.Value, resp.Kv.ModRevision, true, nil
}

func (s placementStore) CompareAndSet(ctx context.Context, key, value []byte, expected int64) (bool, error) {
	_, err := s.kv().Put(ownRequest(ctx), &pb.PutRequest{Key: key, Value: value, ExpectedModRevision: &expected})
	if status.Code(err) == codes.FailedPrecondition {
		return false, nil
	}
	return err == nil, err
}

func (s placementStore) Scan(ctx context.Context, prefix []byte) (keys, values [][]byte, err error) {
	ctx = ownRequest(ctx)
	end := prefixEnd(prefix)
	req := &pb.ScanRequest{Start: prefix, End: end}
	for {
		resp, err := s.kv().Scan(ctx, req)
		if err != nil {
			return nil, nil, err
		}
		for _, kv := range resp.Kvs {
			keys = append(keys, kv.Key)
			values = append(values, kv.Value)
		}
		if len(resp.Continuation) == 0 {
			return keys, values, nil
		}
		req.Continuation = resp.Continuation
	}
}

// prefixEnd is the smallest key greater than every key with prefix.
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// placementActuator implements placement.Actuator with the node's Admin
// operations, sent to a node that holds the range.
type placementActuator struct{ n *Node }

var _ placement.Actuator = placementActuator{}

func (a placementActuator) admin(rangeID uint64) (pb.AdminClient, error) {
	n := a.n
	if n.replica(rangeID) != nil {
		return pb.NewAdminClient(n.selfConn()), nil
	}
	for _, e := range n.placement.Directory() {
		if e.Desc.RangeId != rangeID {
			continue
		}
		target := e.LeaderNodeID
		if target == 0 && len(e.Desc.Replicas) > 0 {
			target = e.Desc.Replicas[0].NodeId
		}
		conn, err := n.trans.conn(target)
		if err != nil {
			return nil, err
		}
		return pb.NewAdminClient(conn), nil
	}
	return nil, fmt.Errorf("range %d is not in the directory", rangeID)
}

func (a placementActuator) MoveReplica(ctx context.Context, rangeID, from, to uint64) (*pb.RangeDescriptor, error) {
	c, err := a.admin(rangeID)
	if err != nil {
		return nil, err
	}
	resp, err := c.MoveReplica(ctx, &pb.MoveReplicaRequest{RangeId: rangeID, FromNode: from, ToNode: to})
	return resp.GetDescriptor_(), err
}

func (a placementActuator) TransferLeader(ctx context.Context, rangeID, to uint64) error {
	c, err := a.admin(rangeID)
	if err != nil {
		return err
	}
	_, err = c.TransferLeader(ctx, &pb.TransferLeaderRequest{RangeId: rangeID, ToNode: to})
	return err
}

func (a placementActuator) SplitRange(ctx context.Context, rangeID uint64) (*pb.RangeDescriptor, *pb.RangeDescriptor, error) {
	c, err := a.admin(rangeID)
	if err != nil {
		return nil, nil, err
	}
	resp, err := c.SplitRange(ctx, &pb.SplitRangeRequest{RangeId: rangeID})
	return resp.GetLeft(), resp.GetRight(), err
}

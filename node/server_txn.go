package node

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
	replica "github.com/raftrix/raftrixdb/range"
	"github.com/raftrix/raftrixdb/txn"
)

// Txn runs a transaction with this node as its coordinator, whichever of
// its ranges the node holds.
func (s *kvServer) Txn(ctx context.Context, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	n := s.n
	if err := n.cfg.Limits.validateTxn(req); err != nil {
		return nil, n.toStatus(err)
	}
	for _, k := range pb.TxnKeys(req.Compare, req.Success, req.Failure) {
		if err := s.checkKeyAllowed(ctx, k); err != nil {
			return nil, n.toStatus(err)
		}
	}
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	// The coordinator's per-range commands are this node's own requests; a
	// range with no replica here is found through placement
	// (remote_ranges.go).
	resp, err := n.txn.Run(ownRequest(ctx), req)
	if err != nil {
		return nil, n.toStatus(err)
	}
	resp.Header = &pb.ResponseHeader{NodeId: n.id}
	return resp, nil
}

var (
	_ txn.Sender      = (*Node)(nil)
	_ txn.RangeLookup = (*Node)(nil)
)

// Evaluate implements txn.Sender: it runs a per-range transaction command on
// the leader of the range holding req.Key, here or on another node. It is
// the node's own request, even when it serves one forwarded to it (a read
// that settles an intent), so it may be forwarded in turn.
func (n *Node) Evaluate(ctx context.Context, req *pb.InternalRequest) (*pb.InternalResponse, error) {
	resp, err := n.evaluate(ownRequest(ctx), req)
	return resp, n.rangeChanged(req.Key, err)
}

// rangeChanged marks err as txn.ErrRangeChanged if it says that the
// command's range does not hold key (it split since the coordinator
// grouped the keys), and forgets what placement said of that range.
func (n *Node) rangeChanged(key []byte, err error) error {
	if re := RoutingErrorOf(err); re == nil || re.Reason != pb.RoutingError_WRONG_RANGE {
		return err
	}
	n.remote.forget(key)
	return fmt.Errorf("%w: %w", txn.ErrRangeChanged, err)
}

// evaluate is Evaluate keeping ctx's forwarding marker.
func (n *Node) evaluate(ctx context.Context, req *pb.InternalRequest) (*pb.InternalResponse, error) {
	var resp *pb.InternalResponse
	err := n.onLeader(ctx, req.Key, func(r *replica.Replica) error {
		cmd, err := internalCommand(req)
		if err != nil {
			return err
		}
		cmd.Revision = n.hlc.Next()
		res, err := r.Propose(ctx, cmd)
		if err != nil {
			return err
		}
		resp = &pb.InternalResponse{Prepare: res.Prepare, Record: res.Record, Txn: res.Txn, Resolved: res.Resolved}
		if wi, ok := res.Err.(*replica.WriteIntentError); ok {
			resp.Conflict, resp.ConflictKey = wi.Intent, wi.Key
			return nil
		}
		if res.Txn != nil && res.Txn.Revision > 0 {
			n.hlc.Observe(res.Txn.Revision)
		}
		return res.Err
	}, func(fctx context.Context, c *grpc.ClientConn) (err error) {
		resp, err = n.forwardEvaluate(fctx, c, req)
		return err
	})
	if err != nil {
		return nil, n.toStatus(err)
	}
	return resp, nil
}

func internalCommand(req *pb.InternalRequest) (*pb.RaftCommand, error) {
	switch op := req.Op.(type) {
	case *pb.InternalRequest_Prepare:
		return &pb.RaftCommand{Op: &pb.RaftCommand_Prepare{Prepare: op.Prepare}}, nil
	case *pb.InternalRequest_End:
		return &pb.RaftCommand{Op: &pb.RaftCommand_End{End: op.End}}, nil
	case *pb.InternalRequest_Push:
		return &pb.RaftCommand{Op: &pb.RaftCommand_Push{Push: op.Push}}, nil
	case *pb.InternalRequest_Heartbeat:
		return &pb.RaftCommand{Op: &pb.RaftCommand_Heartbeat{Heartbeat: op.Heartbeat}}, nil
	case *pb.InternalRequest_Resolve:
		return &pb.RaftCommand{Op: &pb.RaftCommand_Resolve{Resolve: op.Resolve}}, nil
	case *pb.InternalRequest_OnePc:
		return &pb.RaftCommand{Op: &pb.RaftCommand_Txn{Txn: op.OnePc}}, nil
	case *pb.InternalRequest_DeleteRecords:
		return &pb.RaftCommand{Op: &pb.RaftCommand_DeleteRecords{DeleteRecords: op.DeleteRecords}}, nil
	}
	return nil, invalidf("internal request has no operation")
}

// internalServer serves per-range transaction commands from other nodes'
// coordinators.
type internalServer struct {
	pb.UnimplementedInternalServer
	n *Node
}

func (s *internalServer) Evaluate(ctx context.Context, req *pb.InternalRequest) (*pb.InternalResponse, error) {
	if len(req.Key) == 0 {
		return nil, s.n.toStatus(invalidf("internal request has no routing key"))
	}
	return s.n.evaluate(ctx, req)
}

func (s *internalServer) DestroyReplica(ctx context.Context, req *pb.DestroyReplicaRequest) (*pb.DestroyReplicaResponse, error) {
	// The leader sends this after the removal committed. The replica may not
	// have applied it (it may be cut off from the range); it goes anyway.
	if err := s.n.destroyReplica(req.RangeId, req.ReplicaId); err != nil {
		return nil, s.n.toStatus(err)
	}
	return &pb.DestroyReplicaResponse{}, nil
}

package node

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
	replica "github.com/raftrix/raftrixdb/range"
	"github.com/raftrix/raftrixdb/txn"
)

// invalidArgumentError is a request the node refuses before doing anything.
type invalidArgumentError struct{ msg string }

func (e *invalidArgumentError) Error() string { return e.msg }

func invalidf(format string, args ...any) error {
	return &invalidArgumentError{msg: fmt.Sprintf(format, args...)}
}

// wrongRangeError says this node holds no replica for a key.
type wrongRangeError struct {
	nodeID uint64
	key    []byte
}

func (e *wrongRangeError) Error() string {
	return fmt.Sprintf("node %d holds no replica of the range for key %q", e.nodeID, e.key)
}

// lockedError says a write gave up waiting for a transaction's lock.
type lockedError struct {
	key   []byte
	txnID []byte
}

func (e *lockedError) Error() string {
	return fmt.Sprintf("key %q stayed locked by transaction %x until the deadline; retry", e.key, e.txnID)
}

// noReplicaError says this node holds no replica of a range.
type noReplicaError struct{ nodeID, rangeID uint64 }

func (e *noReplicaError) Error() string {
	return fmt.Sprintf("node %d holds no replica of range %d; ask a node that does", e.nodeID, e.rangeID)
}

// toStatus turns an error into the gRPC status a client sees. This is the
// one place where internal errors meet gRPC codes.
func (n *Node) toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err // already a status, e.g. passed through from a forward
	}
	var (
		inv *invalidArgumentError
		nl  *replica.NotLeaderError
		oor *replica.KeyOutOfRangeError
		wr  *wrongRangeError
		cf  *replica.CompareFailedError
		le  *lockedError
		dc  *replica.DescriptorChangedError
		nr  *noReplicaError
	)
	switch {
	case errors.As(err, &inv):
		return status.Error(codes.InvalidArgument, inv.msg)
	case errors.As(err, &nr):
		return status.Error(codes.NotFound, nr.Error())
	case errors.As(err, &dc):
		return status.Error(codes.Aborted, dc.Error())
	case errors.As(err, &le):
		return status.Error(codes.Aborted, le.Error())
	case errors.Is(err, txn.ErrAmbiguous):
		return status.Error(codes.Unavailable, err.Error())
	case errors.As(err, &cf):
		return status.Error(codes.FailedPrecondition, cf.Error())
	case errors.As(err, &nl):
		reason := pb.RoutingError_NOT_LEADER
		if nl.LeaderNodeID == 0 {
			reason = pb.RoutingError_NO_LEADER
		}
		re := &pb.RoutingError{Reason: reason, RangeId: nl.RangeID, LeaderNodeId: nl.LeaderNodeID, LeaderAddr: n.peerAddrOrEmpty(nl.LeaderNodeID)}
		if r := n.replica(nl.RangeID); r != nil {
			re.Descriptor_ = r.Descriptor()
		}
		return withRouting(codes.Unavailable, nl.Error(), re)
	case errors.As(err, &oor):
		re := &pb.RoutingError{Reason: pb.RoutingError_WRONG_RANGE, RangeId: oor.RangeID}
		return withRouting(codes.Unavailable, oor.Error(), re)
	case errors.As(err, &wr):
		return withRouting(codes.Unavailable, wr.Error(), &pb.RoutingError{Reason: pb.RoutingError_WRONG_RANGE})
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "request timed out; a write may or may not have been applied")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, replica.ErrAmbiguousResult):
		// Unavailable as etcd answers a leader change, but without a
		// RoutingError: clients must not blindly retry a conditional write.
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, replica.ErrRemoved):
		return status.Error(codes.Unavailable, "replica is stopping or was removed; retry")
	default:
		return status.Error(codes.Internal, err.Error())
	}
}

func withRouting(code codes.Code, msg string, re *pb.RoutingError) error {
	st, err := status.New(code, msg).WithDetails(re)
	if err != nil {
		return status.Error(code, msg)
	}
	return st.Err()
}

// RoutingErrorOf extracts the routing hint from a status error, if any.
func RoutingErrorOf(err error) *pb.RoutingError {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if re, ok := d.(*pb.RoutingError); ok {
			return re
		}
	}
	return nil
}

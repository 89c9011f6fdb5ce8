package node

import (
	"bytes"
	"context"
	"fmt"

	"google.golang.org/grpc"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
	replica "github.com/raftrix/raftrixdb/range"
)

// onSplit opens the right-hand replica of a split that a local replica has
// just applied. If this node led the left-hand range it campaigns for the
// right-hand one at once, so the new range has a leader without waiting for
// an election timeout.
func (n *Node) onSplit(left, right *pb.RangeDescriptor) {
	st, err := replica.LoadStorage(n.db, right.RangeId)
	if err != nil {
		n.fatal(fmt.Errorf("open right-hand range %d of split: %w", right.RangeId, err))
	}
	if err := n.addReplica(st); err != nil {
		n.fatal(fmt.Errorf("open right-hand range %d of split: %w", right.RangeId, err))
	}
	if l := n.replica(left.RangeId); l != nil && l.IsLeader() {
		if r := n.replica(right.RangeId); r != nil {
			r.Campaign()
		}
	}
	n.sched.enqueue(right.RangeId, flagReady)
	n.metrics.splits.Inc()
	n.logger.Info("range split", "range", left.RangeId, "right", right.RangeId, "at", fmt.Sprintf("%q", right.StartKey))
}

// splitRange splits the range holding key at key, on its leader.
func (n *Node) splitRange(ctx context.Context, key []byte) (*pb.SplitRangeResponse, error) {
	var resp *pb.SplitRangeResponse
	err := n.onLeader(ctx, key, func(r *replica.Replica) error {
		desc := r.Descriptor()
		if bytes.Equal(desc.StartKey, key) {
			return invalidf("%q is already the start of range %d", key, desc.RangeId)
		}
		if err := r.ReadIndex(ctx); err != nil { // be the leader, up to date
			return err
		}
		id, err := n.allocateRangeID(ctx)
		if err != nil {
			return err
		}
		res, err := r.Propose(ctx, &pb.RaftCommand{Op: &pb.RaftCommand_Split{Split: &pb.SplitRange{
			SplitKey: key, RightRangeId: id, ExpectedGeneration: desc.Generation,
		}}})
		if err != nil {
			return err
		}
		if res.Err != nil {
			return res.Err
		}
		resp = &pb.SplitRangeResponse{Left: res.Left, Right: res.Right}
		return nil
	}, func(fctx context.Context, c *grpc.ClientConn) (err error) {
		resp, err = pb.NewAdminClient(c).SplitRange(fctx, &pb.SplitRangeRequest{Key: key})
		return err
	})
	return resp, err
}

// splitRangeInMiddle splits a range at the key in the middle of its data,
// chosen by its leader (which does the whole split if this node is not it).
func (n *Node) splitRangeInMiddle(ctx context.Context, rangeID uint64) (*pb.SplitRangeResponse, error) {
	var key []byte
	var remote *pb.SplitRangeResponse
	err := n.onRangeLeader(ctx, rangeID, func(r *replica.Replica) error {
		if !r.IsLeader() {
			lr, ln := r.Leader()
			return &replica.NotLeaderError{RangeID: rangeID, LeaderReplicaID: lr, LeaderNodeID: ln}
		}
		k, err := r.MiddleKey()
		key = k
		return err
	}, func(fctx context.Context, c *grpc.ClientConn) (err error) {
		remote, err = pb.NewAdminClient(c).SplitRange(fctx, &pb.SplitRangeRequest{RangeId: rangeID})
		return err
	})
	switch {
	case err != nil:
		return nil, err
	case remote != nil:
		return remote, nil
	}
	return n.splitRange(ctx, key)
}

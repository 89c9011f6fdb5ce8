package node

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
	replica "github.com/raftrix/raftrixdb/range"
)

// Replica moves, run on the range's leader:
//
//  1. add the target as a learner (a conf change carrying the new descriptor);
//  2. stream it a snapshot, which creates the replica on the target node;
//  3. wait until the learner has caught up with the log;
//  4. promote the learner and remove the old voter in one joint-consensus
//     change (Raft leaves the joint configuration on its own);
//  5. tell the old node to destroy its replica.
//
// If the leader itself is to be removed it first hands leadership to another
// voter, and the move continues on the new leader.

const (
	catchUpTimeout   = 30 * time.Second
	leaderChangeWait = 3 * time.Second
	leaveJointWait   = 10 * time.Second
	moveProgressPoll = 10 * time.Millisecond
)

// onRangeLeader runs local on the leader of rangeID (here or forwarded).
func (n *Node) onRangeLeader(ctx context.Context, rangeID uint64,
	local func(*replica.Replica) error,
	forward func(context.Context, *grpc.ClientConn) error,
) error {
	r := n.replica(rangeID)
	if r == nil {
		return &noReplicaError{nodeID: n.id, rangeID: rangeID}
	}
	return n.onLeader(ctx, r.Descriptor().StartKey, func(lr *replica.Replica) error {
		if lr.RangeID() != rangeID {
			return &noReplicaError{nodeID: n.id, rangeID: rangeID}
		}
		return local(lr)
	}, forward)
}

func (n *Node) moveReplica(ctx context.Context, req *pb.MoveReplicaRequest) (*pb.RangeDescriptor, error) {
	if _, ok := n.peerAddr(req.ToNode); !ok && req.ToNode != 0 {
		return nil, invalidf("unknown target node %d", req.ToNode)
	}
	var out *pb.RangeDescriptor
	err := n.onRangeLeader(ctx, req.RangeId, func(r *replica.Replica) error {
		desc, err := n.moveReplicaOnLeader(ctx, r, req.FromNode, req.ToNode)
		out = desc
		return err
	}, func(fctx context.Context, c *grpc.ClientConn) error {
		resp, err := pb.NewAdminClient(c).MoveReplica(fctx, req)
		out = resp.GetDescriptor_()
		return err
	})
	return out, err
}

func (n *Node) moveReplicaOnLeader(ctx context.Context, r *replica.Replica, from, to uint64) (*pb.RangeDescriptor, error) {
	if !r.IsLeader() {
		lr, ln := r.Leader()
		return nil, &replica.NotLeaderError{RangeID: r.RangeID(), LeaderReplicaID: lr, LeaderNodeID: ln}
	}
	desc := r.Descriptor()
	fromID := replica.ReplicaIDOnNode(desc, from)
	if fromID == 0 && from != 0 {
		return nil, invalidf("range %d has no replica on node %d", desc.RangeId, from)
	}
	if replica.ReplicaIDOnNode(desc, to) != 0 {
		return nil, invalidf("range %d already has a replica on node %d", desc.RangeId, to)
	}
	if fromID != 0 && fromID == r.ReplicaID() {
		return nil, n.handOffLeadership(ctx, r, fromID)
	}
	if to == 0 {
		return n.removeReplica(ctx, r, fromID)
	}

	learnerID, withLearner, err := n.addLearner(ctx, r, desc, to)
	if err != nil {
		return nil, err
	}

	// 4. Promote and remove in one joint change.
	// The old voter stays in the descriptor as VOTER_OUTGOING while the
	// range is in the joint configuration (it is part of the outgoing
	// quorum); leaving the joint configuration drops it.
	final := proto.Clone(withLearner).(*pb.RangeDescriptor)
	for _, rd := range final.Replicas {
		switch rd.ReplicaId {
		case learnerID:
			rd.Type = pb.ReplicaDescriptor_VOTER
		case fromID:
			rd.Type = pb.ReplicaDescriptor_VOTER_OUTGOING
		}
	}
	final.Generation++
	changes := []raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddNode, NodeID: learnerID}}
	if fromID != 0 {
		changes = append(changes, raftpb.ConfChangeSingle{Type: raftpb.ConfChangeRemoveNode, NodeID: fromID})
	}
	if _, err := n.changeReplicas(ctx, r, raftpb.ConfChangeV2{Changes: changes}, final); err != nil {
		return nil, fmt.Errorf("promote node %d and remove node %d: %w", to, from, err)
	}
	if err := waitFor(ctx, leaveJointWait, func() (bool, error) {
		_, _, joint, err := r.Progress(learnerID)
		return err == nil && !joint, err
	}); err != nil {
		// Until the range leaves the joint configuration, the old voter is
		// still needed for a quorum of the outgoing half: destroying it now
		// could leave the range unable to elect if another voter dies. It
		// destroys itself when it applies its removal.
		n.logger.Warn("range still in a joint configuration; keeping the old replica", "range", desc.RangeId, "error", err)
		return final, nil
	}
	final = r.Descriptor()

	// 5. The old replica is out of the configuration; destroy it.
	if from != 0 {
		n.destroyRemote(ctx, desc.RangeId, from, fromID)
	}
	n.metrics.replicaMoves.Inc()
	n.logger.Info("moved replica", "range", desc.RangeId, "from", from, "to", to)
	return final, nil
}

// addLearner runs the first three steps of a move: it adds a learner on
// node to to the range whose descriptor is desc, sends it its first
// snapshot and waits until it has caught up. It returns the learner's
// replica ID and the descriptor that lists it.
func (n *Node) addLearner(ctx context.Context, r *replica.Replica, desc *pb.RangeDescriptor, to uint64) (uint64, *pb.RangeDescriptor, error) {
	// 1. The learner.
	learnerID := desc.NextReplicaId
	withLearner := proto.Clone(desc).(*pb.RangeDescriptor)
	withLearner.Replicas = append(withLearner.Replicas, &pb.ReplicaDescriptor{NodeId: to, ReplicaId: learnerID, Type: pb.ReplicaDescriptor_LEARNER})
	withLearner.NextReplicaId++
	withLearner.Generation++
	if _, err := n.changeReplicas(ctx, r, raftpb.ConfChangeV2{Changes: []raftpb.ConfChangeSingle{
		{Type: raftpb.ConfChangeAddLearnerNode, NodeID: learnerID},
	}}, withLearner); err != nil {
		return 0, nil, fmt.Errorf("add learner on node %d: %w", to, err)
	}

	// 2. Its first snapshot, and 3. catching up.
	st := r.Status()
	m := raftpb.Message{Type: raftpb.MsgSnap, From: r.ReplicaID(), To: learnerID, Term: st.Term}
	if _, err := n.trans.streamSnapshot(r, to, m); err != nil {
		return 0, nil, fmt.Errorf("snapshot to learner on node %d: %w", to, err)
	}
	n.metrics.snapshotsSent.Inc()
	if err := waitFor(ctx, catchUpTimeout, func() (bool, error) {
		match, last, _, err := r.Progress(learnerID)
		return err == nil && match >= last, err
	}); err != nil {
		return 0, nil, fmt.Errorf("learner on node %d did not catch up: %w", to, err)
	}
	return learnerID, withLearner, nil
}

// confChangeTimeout bounds one configuration change. Raft silently drops a
// change proposed while another is pending (it becomes an empty entry), and
// its waiter would otherwise wait for the whole move's deadline.
const confChangeTimeout = 15 * time.Second

func (n *Node) changeReplicas(ctx context.Context, r *replica.Replica, cc raftpb.ConfChangeV2, next *pb.RangeDescriptor) (*pb.RangeDescriptor, error) {
	ctx, cancel := context.WithTimeout(ctx, confChangeTimeout)
	defer cancel()
	return r.ChangeReplicas(ctx, cc, next)
}

// removeReplica removes a voter without replacing it.
func (n *Node) removeReplica(ctx context.Context, r *replica.Replica, replicaID uint64) (*pb.RangeDescriptor, error) {
	desc := r.Descriptor()
	voters, removingVoter := 0, false
	for _, rd := range desc.Replicas {
		if rd.Type == pb.ReplicaDescriptor_VOTER {
			voters++
			removingVoter = removingVoter || rd.ReplicaId == replicaID
		}
	}
	if removingVoter && voters <= 3 {
		return nil, invalidf("range %d has %d voters; removing one would leave it under-replicated", desc.RangeId, voters)
	}
	next := proto.Clone(desc).(*pb.RangeDescriptor)
	from := replica.NodeOfReplica(desc, replicaID)
	next.Replicas = slices.DeleteFunc(next.Replicas, func(rd *pb.ReplicaDescriptor) bool { return rd.ReplicaId == replicaID })
	next.Generation++
	if _, err := n.changeReplicas(ctx, r, raftpb.ConfChangeV2{Changes: []raftpb.ConfChangeSingle{
		{Type: raftpb.ConfChangeRemoveNode, NodeID: replicaID},
	}}, next); err != nil {
		return nil, fmt.Errorf("remove replica on node %d: %w", from, err)
	}
	n.destroyRemote(ctx, desc.RangeId, from, replicaID)
	return next, nil
}

// destroyRemote tells a node to destroy a replica its range removed; best
// effort (the node may be dead).
func (n *Node) destroyRemote(ctx context.Context, rangeID, nodeID, replicaID uint64) {
	conn, err := n.trans.conn(nodeID)
	if err != nil {
		return
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := pb.NewInternalClient(conn).DestroyReplica(dctx, &pb.DestroyReplicaRequest{RangeId: rangeID, ReplicaId: replicaID}); err != nil {
		n.logger.Warn("destroy removed replica", "range", rangeID, "node", nodeID, "error", err)
	}
}

// handOffLeadership moves leadership away from the replica about to be
// removed and answers NotLeader, so the caller retries on the new leader.
func (n *Node) handOffLeadership(ctx context.Context, r *replica.Replica, leaving uint64) error {
	for _, rd := range r.Descriptor().Replicas {
		if rd.ReplicaId != leaving && rd.Type == pb.ReplicaDescriptor_VOTER {
			if err := r.TransferLeader(rd.ReplicaId); err != nil {
				return err
			}
			break
		}
	}
	_ = waitFor(ctx, leaderChangeWait, func() (bool, error) { return !r.IsLeader(), nil })
	leaderReplica, leaderNode := r.Leader()
	return &replica.NotLeaderError{RangeID: r.RangeID(), LeaderReplicaID: leaderReplica, LeaderNodeID: leaderNode}
}

func (n *Node) transferLeader(ctx context.Context, req *pb.TransferLeaderRequest) error {
	return n.onRangeLeader(ctx, req.RangeId, func(r *replica.Replica) error {
		target := replica.ReplicaIDOnNode(r.Descriptor(), req.ToNode)
		if target == 0 {
			return invalidf("range %d has no replica on node %d", req.RangeId, req.ToNode)
		}
		if target == r.ReplicaID() && r.IsLeader() {
			return nil
		}
		if err := r.TransferLeader(target); err != nil { // NotLeader on a follower
			return err
		}
		return waitFor(ctx, leaderChangeWait, func() (bool, error) {
			lead, _ := r.Leader()
			return lead == target, nil
		})
	}, func(fctx context.Context, c *grpc.ClientConn) error {
		_, err := pb.NewAdminClient(c).TransferLeader(fctx, req)
		return err
	})
}

// waitFor polls cond until it holds, fails, or the timeout or ctx ends.
func waitFor(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
			}
			return ctx.Err()
		case <-time.After(moveProgressPoll):
		}
	}
}

// destroyReplica closes a replica removed from its range and deletes its
// data, unless the local replica has a different (newer) replica ID.
func (n *Node) destroyReplica(rangeID, replicaID uint64) error {
	n.createMu.Lock()
	r := n.replica(rangeID)
	_, busy := n.destroying[rangeID] // another call is destroying it
	if r == nil || r.ReplicaID() != replicaID || busy {
		n.createMu.Unlock()
		return nil
	}
	n.destroying[rangeID] = r.Descriptor()
	n.createMu.Unlock()
	defer func() {
		n.createMu.Lock()
		delete(n.destroying, rangeID)
		n.createMu.Unlock()
	}()
	desc := r.Descriptor()
	// Out of the registry first, so no new scheduler round picks the replica
	// up, then wait out a round that already has it: that round's log and
	// apply batches would otherwise write its keys back after destroyData.
	n.removeFromRegistry(rangeID)
	n.sched.waitIdle(rangeID)
	r.Close()
	if err := n.destroyData(desc, replicaID); err != nil {
		return err
	}
	n.sched.forget(rangeID)
	n.trans.forgetRoutes(rangeID)
	n.logger.Info("destroyed replica", "range", rangeID, "replica", replicaID)
	return nil
}

// destroyData deletes a closed replica's data and leaves a tombstone that
// refuses replica IDs up to tombstone.
func (n *Node) destroyData(desc *pb.RangeDescriptor, tombstone uint64) error {
	b := n.db.NewBatch()
	defer b.Close()
	if err := replica.DestroyData(b, desc, tombstone); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	// The deleted keys may be cached; a later replica of them arrives by
	// snapshot, which clears the cache too, but the memory is freed now.
	// The record index must forget the deleted records: it holds every
	// record of the engine.
	n.records.Clear()
	n.txnRecords.DropSpan(desc)
	return nil
}

// createReplica opens an empty replica of desc on this node, to be filled by
// the snapshot that names it. It refuses if desc does not list this node or
// if a local replica overlaps its span (for example the left-hand side of a
// split that this node has not applied yet): the sender retries later.
func (n *Node) createReplica(desc *pb.RangeDescriptor) (*replica.Replica, error) {
	// Two snapshots can race to create the same replica (a move's own and
	// one sent because the replica was reported missing).
	n.createMu.Lock()
	defer n.createMu.Unlock()
	if r := n.replica(desc.RangeId); r != nil {
		return r, nil
	}
	if desc == nil || replica.ReplicaIDOnNode(desc, n.id) == 0 {
		return nil, fmt.Errorf("snapshot descriptor does not list node %d", n.id)
	}
	if dead, err := replica.Tombstone(n.db, desc.RangeId); err != nil {
		return nil, err
	} else if id := replica.ReplicaIDOnNode(desc, n.id); id <= dead {
		return nil, fmt.Errorf("range %d: replica %d on node %d was removed (tombstone %d); the sender's descriptor is stale", desc.RangeId, id, n.id, dead)
	}
	for _, r := range n.allReplicas() {
		if spansOverlap(r.Descriptor(), desc) {
			return nil, fmt.Errorf("range %d overlaps local range %d; retry later", desc.RangeId, r.RangeID())
		}
	}
	// A replica being destroyed is out of the registry already, but its
	// data is not deleted yet: a replica of its range, or of a span it
	// covers (it may be a stale replica from before a split), would lose
	// its snapshot's data to that deletion.
	for id, d := range n.destroying {
		if id == desc.RangeId || spansOverlap(d, desc) {
			return nil, fmt.Errorf("range %d: the replica of range %d on node %d, which overlaps it, is being destroyed; retry later", desc.RangeId, id, n.id)
		}
	}
	b := n.db.NewBatch()
	defer b.Close()
	if err := replica.WriteUninitializedState(b, desc); err != nil {
		return nil, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, err
	}
	st, err := replica.LoadStorage(n.db, desc.RangeId)
	if err != nil {
		return nil, err
	}
	if err := n.addReplica(st); err != nil {
		return nil, err
	}
	n.logger.Info("created replica for incoming snapshot", "range", desc.RangeId)
	return n.replica(desc.RangeId), nil
}

func spansOverlap(a, b *pb.RangeDescriptor) bool {
	// [a.start, a.end) and [b.start, b.end) overlap unless one ends before
	// the other starts; an empty end is +infinity.
	aEndsBeforeB := len(a.EndKey) > 0 && bytes.Compare(a.EndKey, b.StartKey) <= 0
	bEndsBeforeA := len(b.EndKey) > 0 && bytes.Compare(b.EndKey, a.StartKey) <= 0
	return !aEndsBeforeB && !bEndsBeforeA
}

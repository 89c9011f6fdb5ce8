package replica

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Replica membership changes. A change is a Raft ConfChangeV2 whose context
// carries the range's next descriptor (generation + 1), so the descriptor
// and the Raft configuration change in the same log entry on every replica.
// A change proposed on a descriptor that has changed since is rejected at
// apply time, on every replica alike.

// ChangeReplicas proposes cc with next as the range's descriptor once it
// applies, and waits until this replica has applied it.
func (r *Replica) ChangeReplicas(ctx context.Context, cc raftpb.ConfChangeV2, next *pb.RangeDescriptor) (*pb.RangeDescriptor, error) {
	id := newRequestID()
	data, err := proto.Marshal(&pb.ConfChangeContext{ProposalId: id, Descriptor_: next})
	if err != nil {
		return nil, err
	}
	cc.Context = data
	ch := make(chan Result, 1)
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return nil, ErrRemoved
	}
	if r.mu.rn.BasicStatus().RaftState != raft.StateLeader {
		err := r.notLeaderLocked()
		r.mu.Unlock()
		return nil, err
	}
	r.setQuiescedLocked(false)
	r.flushProposalsLocked() // the commands proposed before it go first
	r.mu.proposals[id] = ch
	if err := r.mu.rn.ProposeConfChange(cc); err != nil {
		delete(r.mu.proposals, id)
		r.mu.Unlock()
		return nil, err
	}
	r.mu.Unlock()
	r.cfg.Notify()
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Left, nil
	case <-ctx.Done():
		r.mu.Lock()
		delete(r.mu.proposals, id)
		r.mu.Unlock()
		return nil, ctx.Err()
	}
}

// applyConfChangeEntry applies a configuration change entry. It returns the
// new ConfState, the descriptor after the entry, and the proposal to
// complete (if this replica proposed it).
func (r *Replica) applyConfChangeEntry(e *raftpb.Entry, desc *pb.RangeDescriptor) (*raftpb.ConfState, *pb.RangeDescriptor, *completedProposal, error) {
	var cc raftpb.ConfChangeI
	var ctxBytes []byte
	if e.Type == raftpb.EntryConfChange {
		var c raftpb.ConfChange
		if err := c.Unmarshal(e.Data); err != nil {
			return nil, nil, nil, err
		}
		cc, ctxBytes = c, c.Context
	} else {
		var c raftpb.ConfChangeV2
		if err := c.Unmarshal(e.Data); err != nil {
			return nil, nil, nil, err
		}
		cc, ctxBytes = c, c.Context
	}
	var cctx pb.ConfChangeContext
	if len(ctxBytes) > 0 {
		if err := proto.Unmarshal(ctxBytes, &cctx); err != nil {
			return nil, nil, nil, fmt.Errorf("range %d: decode conf change context: %w", r.rangeID, err)
		}
	}
	var done *completedProposal
	next := cctx.Descriptor_
	if next != nil && next.Generation != desc.Generation+1 {
		// Decided on an old descriptor: apply nothing, on every replica.
		cc = refusedChange()
		err := &DescriptorChangedError{RangeID: r.rangeID, Expected: next.Generation - 1, Actual: desc.Generation}
		done = &completedProposal{id: cctx.ProposalId, res: Result{Err: err}}
		next = nil
	}
	r.mu.Lock()
	cs := r.mu.rn.ApplyConfChange(cc)
	r.mu.Unlock()
	if next == nil {
		next = desc
		if v2, ok := cc.(raftpb.ConfChangeV2); ok && v2.LeaveJoint() && hasOutgoing(desc) {
			// Raft left the joint configuration (an entry it proposed
			// itself): the outgoing voters are gone now.
			next = withoutOutgoing(desc)
		}
	}
	if done == nil && cctx.ProposalId != 0 {
		done = &completedProposal{id: cctx.ProposalId, res: Result{Left: next}}
	}
	return cs, next, done, nil
}

// refusedChange returns what a refused configuration change is applied as: Raft
// must apply every configuration change entry, and skips a change whose
// node ID is zero (raft's confchange: "etcd replaces the NodeID with zero
// if it decides (downstream of raft) to not apply a change"). It must not
// be an empty ConfChangeV2, which Raft reads as "leave the joint
// configuration" (and panics outside one). A simple change is refused in a
// joint configuration too, but a refused change never meets one: Raft
// accepts a proposed change only once every earlier one is applied and the
// configuration is not joint, and a refused change leaves it so.
func refusedChange() raftpb.ConfChangeV2 {
	return raftpb.ConfChangeV2{Changes: []raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddNode, NodeID: 0}}}
}

// inConfState reports whether id is a member of cs in any role.
func inConfState(cs *raftpb.ConfState, id uint64) bool {
	for _, ids := range [][]uint64{cs.Voters, cs.VotersOutgoing, cs.Learners, cs.LearnersNext} {
		if slices.Contains(ids, id) {
			return true
		}
	}
	return false
}

// TransferLeader asks Raft to hand leadership to replicaID.
func (r *Replica) TransferLeader(replicaID uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.closed {
		return ErrRemoved
	}
	st := r.mu.rn.BasicStatus()
	if st.RaftState != raft.StateLeader {
		return r.notLeaderLocked()
	}
	// The target will campaign with a flag that voters obey inside their
	// lease: this leader's lease ends now, for good (lease.go).
	r.mu.lease.noLeaseTerm = st.Term
	r.setQuiescedLocked(false)
	r.mu.rn.TransferLeader(replicaID)
	r.cfg.Notify()
	return nil
}

// ErrNoProgress is returned by Progress for a replica the leader does not
// track.
var ErrNoProgress = errors.New("no progress known for replica")

// Progress returns how far the leader knows replicaID's log to match its own
// (match index), the leader's last index, and whether the configuration is
// joint. Only the leader knows.
func (r *Replica) Progress(replicaID uint64) (match, last uint64, joint bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.closed {
		return 0, 0, false, ErrRemoved
	}
	st := r.mu.rn.Status()
	if st.RaftState != raft.StateLeader {
		return 0, 0, false, r.notLeaderLocked()
	}
	joint = len(st.Config.Voters[1]) > 0
	pr, ok := st.Progress[replicaID]
	if !ok {
		return 0, 0, joint, ErrNoProgress
	}
	_, last = r.storage.Bounds()
	return pr.Match, last, joint, nil
}

func hasOutgoing(d *pb.RangeDescriptor) bool {
	for _, r := range d.Replicas {
		if r.Type == pb.ReplicaDescriptor_VOTER_OUTGOING {
			return true
		}
	}
	return false
}

// withoutOutgoing is d after leaving a joint configuration.
func withoutOutgoing(d *pb.RangeDescriptor) *pb.RangeDescriptor {
	next := proto.Clone(d).(*pb.RangeDescriptor)
	next.Replicas = slices.DeleteFunc(next.Replicas, func(r *pb.ReplicaDescriptor) bool {
		return r.Type == pb.ReplicaDescriptor_VOTER_OUTGOING
	})
	next.Generation++
	return next
}

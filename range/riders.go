package replica

import (
	"context"
	"slices"
	"time"

	"go.etcd.io/raft/v3"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Riders: a command nobody waits on soon (a decided transaction's intent
// resolutions, its record's deletion) need not take a Raft entry of its
// own. Each entry costs the range a round: an append on every replica, a
// synced write, an acknowledgement, a commit and an apply. With many ranges
// a range rarely has two proposals in one round, so entries do not batch by
// themselves. ProposeRider instead queues the command on the leader; the
// next Propose of the range carries every queued command in its entry,
// applied ahead of its own (RaftCommand.riders). A command that finds no
// carrier within its wait proposes itself, carrying the riders queued
// after it.
//
// Riding changes no outcome: a rider is applied exactly as if proposed
// alone, just later, and the commands that may ride (resolutions, record
// deletions) are ones whose effect any later reader could also have caused
// (a reader that meets an unresolved intent settles it itself).

// maxRiders bounds the commands one entry carries; a rider that finds
// that many queued proposes at once.
const maxRiders = 64

// ProposeRider proposes cmd to ride in the range's next proposal, or on its
// own after wait, and waits until this replica has applied it. Errors are
// Propose's.
func (r *Replica) ProposeRider(ctx context.Context, cmd *pb.RaftCommand, wait time.Duration) (Result, error) {
	cmd.ProposalId = newRequestID()
	ch := make(chan Result, 1)
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return Result{}, ErrRemoved
	}
	r.setQuiescedLocked(false)
	if r.mu.rn.BasicStatus().RaftState != raft.StateLeader {
		err := r.notLeaderLocked()
		r.mu.Unlock()
		return Result{}, err
	}
	if len(r.mu.riders) >= maxRiders {
		r.mu.Unlock()
		r.ridersAlone.Add(1)
		return r.Propose(ctx, cmd)
	}
	r.mu.riders = append(r.mu.riders, cmd)
	r.mu.proposals[cmd.ProposalId] = ch
	r.mu.Unlock()

	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case res := <-ch:
		return res, nil
	case <-ctx.Done():
		r.mu.Lock()
		r.unqueueRiderLocked(cmd)
		delete(r.mu.proposals, cmd.ProposalId)
		r.mu.Unlock()
		return Result{}, ctx.Err()
	case <-t.C:
	}
	r.mu.Lock()
	if !r.unqueueRiderLocked(cmd) {
		// Already in a proposed entry (or failed with the leadership).
		r.mu.Unlock()
		return r.waitProposal(ctx, cmd.ProposalId, ch)
	}
	delete(r.mu.proposals, cmd.ProposalId)
	r.mu.Unlock()
	r.ridersAlone.Add(1)
	return r.Propose(ctx, cmd)
}

// Riders returns how many commands rode in another command's entry
// (carried) and how many found no carrier and were proposed alone.
func (r *Replica) Riders() (carried, alone uint64) {
	return r.ridersCarried.Load(), r.ridersAlone.Load()
}

// unqueueRiderLocked removes cmd from the riders, reporting whether it was
// still there.
func (r *Replica) unqueueRiderLocked(cmd *pb.RaftCommand) bool {
	i := slices.Index(r.mu.riders, cmd)
	if i < 0 {
		return false
	}
	r.mu.riders = slices.Delete(r.mu.riders, i, i+1)
	return true
}

package replica

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// newRequestID returns a random ID for a proposal or read. Random IDs stay
// unique across restarts, which a counter would not: an entry proposed
// before a crash may be applied after it. math/rand/v2's generator is
// seeded from the operating system when the process starts, which is all
// that uniqueness needs; crypto/rand cost a system call per proposal (0.6%
// of the nodes' CPU under 4-range transactions, scripts/profile.sh).
func newRequestID() uint64 {
	return rand.Uint64()
}

// Propose replicates cmd through Raft and waits until this replica has
// applied it. Only the leader accepts proposals; others return a
// *NotLeaderError. If ctx ends first the outcome is unknown: the command may
// still be applied later.
//
// The command is not handed to Raft at once but buffered until the
// replica's next Ready (flushProposalsLocked), with every other command
// proposed until then. Raft sends each proposal it is handed its own append
// to every follower, each answered on its own; commands handed over
// together travel in one append per follower. Nothing waits longer for it:
// Raft's messages go out only with the next Ready anyway.
func (r *Replica) Propose(ctx context.Context, cmd *pb.RaftCommand) (Result, error) {
	cmd.ProposalId = newRequestID()
	data, err := cmd.MarshalVT()
	if err != nil {
		return Result{}, err
	}
	ch := make(chan Result, 1)
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return Result{}, ErrRemoved
	}
	// Wake even when refusing: a request is a sign the range is needed, and
	// a quiesced follower whose leader is gone must start an election.
	r.setQuiescedLocked(false)
	if r.mu.rn.BasicStatus().RaftState != raft.StateLeader {
		err := r.notLeaderLocked()
		r.mu.Unlock()
		return Result{}, err
	}
	r.mu.proposals[cmd.ProposalId] = ch
	r.mu.buffered.ents = append(r.mu.buffered.ents, raftpb.Entry{Data: data})
	r.mu.buffered.ids = append(r.mu.buffered.ids, cmd.ProposalId)
	r.mu.Unlock()
	r.cfg.Notify()
	select {
	case res := <-ch:
		var refused *refusedProposal
		if errors.As(res.Err, &refused) {
			return Result{}, refused.err
		}
		return res, nil
	case <-ctx.Done():
		r.mu.Lock()
		delete(r.mu.proposals, cmd.ProposalId)
		r.mu.Unlock()
		return Result{}, ctx.Err()
	}
}

// bufferedProposals are commands proposed since the last Ready, in order,
// and their proposal IDs.
type bufferedProposals struct {
	ents []raftpb.Entry
	ids  []uint64
}

// refusedProposal is the Result.Err a buffered proposal's waiter receives
// when Raft refused it (the replica stopped leading, or a leadership
// transfer is under way): it was never proposed. Propose returns err.
type refusedProposal struct{ err error }

func (e *refusedProposal) Error() string { return "proposal refused: " + e.err.Error() }

// flushProposalsLocked hands the buffered proposals to Raft in one
// proposal message, so that they share their appends to the followers.
func (r *Replica) flushProposalsLocked() {
	b := r.mu.buffered
	if len(b.ents) == 0 {
		return
	}
	// Raft keeps the entries (and sets their index and term): the next
	// commands need new slices.
	r.mu.buffered = bufferedProposals{}
	err := r.mu.rn.Step(raftpb.Message{Type: raftpb.MsgProp, From: r.replicaID, Entries: b.ents})
	if err == nil {
		return
	}
	if errors.Is(err, raft.ErrProposalDropped) {
		err = r.notLeaderLocked()
	}
	for _, id := range b.ids {
		if ch, ok := r.mu.proposals[id]; ok {
			ch <- Result{Err: &refusedProposal{err: err}}
			delete(r.mu.proposals, id)
		}
	}
}

// ReadIndex waits until this replica's state reflects every write committed
// before the call (Raft's ReadIndex protocol), so a read that follows is
// linearizable. Only the leader serves it.
//
// Reads are batched: a read joins the queue, and the next Ready sends one
// ReadIndex request for every read queued so far, so concurrent reads of a
// range share one heartbeat round (as etcd's server does). A request sent
// after a read arrived confirms leadership at a time after the read began,
// which is all linearizability asks.
func (r *Replica) ReadIndex(ctx context.Context) error {
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return ErrRemoved
	}
	r.setQuiescedLocked(false) // see Propose
	st := r.mu.rn.BasicStatus()
	if st.RaftState != raft.StateLeader {
		err := r.notLeaderLocked()
		r.mu.Unlock()
		return err
	}
	if index, ok := r.leaseReadIndexLocked(st.Term, st.Commit); ok {
		r.mu.Unlock()
		r.leaseReads.Add(1)
		return r.waitApplied(ctx, index)
	}
	ch := make(chan uint64, 1)
	r.mu.readQueue = append(r.mu.readQueue, ch)
	r.mu.Unlock()
	r.cfg.Notify()
	select {
	case index, ok := <-ch:
		if !ok {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.mu.closed {
				return ErrRemoved
			}
			return r.notLeaderLocked()
		}
		return r.waitApplied(ctx, index)
	case <-ctx.Done():
		// ch is buffered: the answer, if it comes, is dropped with it.
		return ctx.Err()
	}
}

// sendQueuedReadsLocked sends one ReadIndex request for the queued reads,
// or fails them if this replica is no longer the leader.
// A lease refresh (lease.go) is such a request, possibly without reads.
func (r *Replica) sendQueuedReadsLocked() {
	if len(r.mu.readQueue) == 0 && !r.mu.lease.wantRefresh {
		return
	}
	r.mu.lease.wantRefresh = false
	st := r.mu.rn.BasicStatus()
	if st.RaftState != raft.StateLeader {
		r.failReadsLocked()
		return
	}
	id := make([]byte, 8)
	binary.LittleEndian.PutUint64(id, newRequestID())
	r.mu.reads[string(id)] = &readRequest{reads: r.mu.readQueue, sentAt: r.cfg.Now(), term: st.Term}
	r.mu.readQueue = nil
	r.mu.rn.ReadIndex(id)
}

// failReadsLocked answers every waiting read: the replica lost leadership
// or closed. A read is safe to retry elsewhere.
func (r *Replica) failReadsLocked() {
	for id, req := range r.mu.reads {
		for _, ch := range req.reads {
			close(ch)
		}
		delete(r.mu.reads, id)
	}
	for _, ch := range r.mu.readQueue {
		close(ch)
	}
	r.mu.readQueue = nil
	r.mu.lease.refreshing = false
}

// failPendingLocked answers every waiting proposal and read after this
// replica lost leadership, instead of letting them wait for their deadline.
// A read is safe to retry elsewhere; a proposal's outcome is unknown.
func (r *Replica) failPendingLocked() {
	for id, ch := range r.mu.proposals {
		ch <- Result{Err: ErrAmbiguousResult}
		delete(r.mu.proposals, id)
	}
	r.failReadsLocked()
}

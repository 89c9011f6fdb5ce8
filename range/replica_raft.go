package replica

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"

	"go.etcd.io/raft/v3"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// newRequestID returns a random ID for a proposal or read. Random IDs stay
// unique across restarts, which a counter would not: an entry proposed
// before a crash may be applied after it.
func newRequestID() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

// Propose replicates cmd through Raft and waits until this replica has
// applied it. Only the leader accepts proposals; others return a
// *NotLeaderError. If ctx ends first the outcome is unknown: the command may
// still be applied later.
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
	if err := r.mu.rn.Propose(data); err != nil {
		delete(r.mu.proposals, cmd.ProposalId)
		if errors.Is(err, raft.ErrProposalDropped) {
			err = r.notLeaderLocked()
		}
		r.mu.Unlock()
		return Result{}, err
	}
	r.mu.Unlock()
	r.cfg.Notify()
	select {
	case res := <-ch:
		return res, nil
	case <-ctx.Done():
		r.mu.Lock()
		delete(r.mu.proposals, cmd.ProposalId)
		r.mu.Unlock()
		return Result{}, ctx.Err()
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

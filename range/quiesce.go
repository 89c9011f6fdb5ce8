package replica

import (
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// Quiescence: an idle range stops ticking and heartbeating, so thousands of
// idle ranges cost nothing. The leader quiesces when every replica has the
// whole log applied and nothing is pending: it stops ticking and sends each
// follower one last heartbeat marked "quiesce" (the node sends it out of
// band, see QuiesceHeartbeats). A follower that receives it, agreeing on the
// leader, the term and the commit index, stops ticking too.
//
// Any other message, a proposal or a read wakes a replica (a woken leader's
// next append or heartbeat wakes its followers). A quiesced follower cannot
// notice its leader die, since it hears nothing either way: the node wakes
// the ranges led by a peer whose connection breaks (Wake), and those hold an
// election.

// quiesceAfterTicks is how many consecutive idle ticks a leader waits before
// quiescing, so a range in steady use does not flap.
const quiesceAfterTicks = 3

// Quiesced reports whether the replica is quiesced (not ticking).
func (r *Replica) Quiesced() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.quiesced
}

// setQuiescedLocked records a change and tells the node.
func (r *Replica) setQuiescedLocked(q bool) {
	if r.mu.quiesced == q {
		return
	}
	r.mu.quiesced = q
	r.mu.idleTicks = 0
	r.cfg.OnQuiesce(q)
}

// Wake unquiesces the replica: it ticks again from now on.
func (r *Replica) Wake() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.mu.closed {
		r.setQuiescedLocked(false)
	}
}

// Tick advances the replica's logical clock by one tick. A leader that has
// been idle long enough quiesces instead and returns the heartbeats that tell
// its followers to quiesce too; the caller sends them.
func (r *Replica) Tick() (quiesce []raftpb.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.closed || r.mu.quiesced {
		return nil
	}
	// Decide before ticking: a leader's tick produces heartbeats, which
	// would make it look busy.
	if !r.canQuiesceLocked() {
		r.mu.idleTicks = 0
		r.mu.rn.Tick()
		return nil
	}
	r.mu.idleTicks++
	if r.mu.idleTicks < quiesceAfterTicks {
		r.mu.rn.Tick()
		return nil
	}
	st := r.mu.rn.Status()
	for id := range st.Progress {
		if id == r.replicaID {
			continue
		}
		quiesce = append(quiesce, raftpb.Message{
			Type: raftpb.MsgHeartbeat, From: r.replicaID, To: id, Term: st.Term, Commit: st.Commit,
		})
	}
	r.setQuiescedLocked(true)
	return quiesce
}

// canQuiesceLocked: a leader with nothing in flight, everything committed
// and applied, and every follower caught up and replicating.
func (r *Replica) canQuiesceLocked() bool {
	if len(r.mu.proposals) > 0 || len(r.mu.reads) > 0 || len(r.mu.readQueue) > 0 || r.mu.rn.HasReady() {
		return false
	}
	st := r.mu.rn.Status()
	if st.RaftState != raft.StateLeader || st.LeadTransferee != 0 || len(st.Config.Voters[1]) > 0 {
		return false
	}
	_, last := r.storage.Bounds()
	if st.Commit != last || st.Applied != st.Commit {
		return false
	}
	for id, pr := range st.Progress {
		if id == r.replicaID {
			continue
		}
		if pr.Match != last || pr.State.String() != "StateReplicate" || pr.IsPaused() {
			return false
		}
	}
	return true
}

// StepQuiesce handles a leader's quiesce heartbeat: it is stepped like any
// heartbeat, and the follower quiesces if it agrees with the leader on the
// term and has the whole committed log.
func (r *Replica) StepQuiesce(m raftpb.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.closed {
		return ErrRemoved
	}
	if err := r.mu.rn.Step(m); err != nil {
		return err
	}
	st := r.mu.rn.BasicStatus()
	_, last := r.storage.Bounds()
	if st.RaftState == raft.StateFollower && st.Lead == m.From && st.Term == m.Term && st.Commit == m.Commit && last == m.Commit {
		r.setQuiescedLocked(true)
	}
	return nil
}

// wakesReplica reports whether a message wakes a quiesced replica: every
// message but heartbeat responses (the answers to a quiescing leader's last
// heartbeats).
func wakesReplica(m raftpb.Message) bool {
	return m.Type != raftpb.MsgHeartbeatResp
}

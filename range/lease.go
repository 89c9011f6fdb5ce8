package replica

import (
	"time"
)

// Leader leases: reads without a heartbeat round.
//
// A ReadIndex round proves that a quorum still followed this leader when
// the round was sent: each acknowledging follower reset its election timer
// on receiving the round's heartbeat. Raft is configured with CheckQuorum,
// so such a follower ignores vote requests until ElectionTicks of its own
// ticks have passed since then; it campaigns no sooner either. A new leader
// needs a quorum, which overlaps the one that acknowledged. So for
// LeaseDuration (ElectionTicks-2 ticks: a tick is lost to rounding and one
// is kept as margin for the clocks' rates) after a round was sent, no other
// replica can have become leader, and this leader's commit index covers
// every write acknowledged to anyone. A read in that window is served at
// the current commit index without a round: it is linearizable at the
// moment the lease was checked.
//
// Three things would break the argument, and are excluded:
//   - A leadership transfer makes the target campaign with a flag that
//     voters obey even inside their lease. A leader that starts a transfer
//     gives up leases for the rest of its term (TransferLeader).
//   - A replica that restarts has forgotten its leader and votes at once.
//     The node ignores vote requests for one election timeout after it
//     starts (node/transport.go).
//   - Followers must tick at the same rate as the leader measures time:
//     every node of a cluster runs the same TickInterval and ElectionTicks.
//
// While a lease is in force, reads refresh it with a round in the
// background once half of it is used, so a busy range keeps its lease and
// its reads never wait for a round.

// leaderLease is a leader's lease state; guarded by Replica.mu.
type leaderLease struct {
	// until is when the lease ends; it holds only in term.
	until time.Time
	term  uint64
	// noLeaseTerm is a term in which this replica started a leadership
	// transfer: no lease in it from then on.
	noLeaseTerm uint64
	// refreshing is set while a background round is asked for or in
	// flight; wantRefresh while it is asked for and not yet sent.
	refreshing, wantRefresh bool
}

// readRequest is a ReadIndex round in flight and the reads it serves.
type readRequest struct {
	reads  []chan uint64
	sentAt time.Time
	term   uint64
}

// leaseReadIndexLocked returns the index a read may be served at under the
// lease, if the leader (of term) holds one now.
func (r *Replica) leaseReadIndexLocked(term, commit uint64) (uint64, bool) {
	l := &r.mu.lease
	if r.cfg.LeaseDuration <= 0 || l.term != term || l.noLeaseTerm == term {
		return 0, false
	}
	now := r.cfg.Now()
	left := l.until.Sub(now)
	if left <= 0 {
		return 0, false
	}
	if left < r.cfg.LeaseDuration/2 && !l.refreshing {
		l.refreshing, l.wantRefresh = true, true
		r.cfg.Notify()
	}
	return commit, true
}

// extendLeaseLocked records a completed ReadIndex round.
func (r *Replica) extendLeaseLocked(req *readRequest) {
	l := &r.mu.lease
	l.refreshing = false
	if r.cfg.LeaseDuration <= 0 || req.term != r.mu.rn.BasicStatus().Term {
		return
	}
	until := req.sentAt.Add(r.cfg.LeaseDuration)
	if l.term != req.term || until.After(l.until) {
		l.until, l.term = until, req.term
	}
}

// LeaseReads returns how many reads this replica served under its lease,
// without a ReadIndex round.
func (r *Replica) LeaseReads() uint64 { return r.leaseReads.Load() }

package replica

import (
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

// Commit notices. When an entry commits, etcd's raft leader at once sends
// every follower an append without entries that only carries the new commit
// index, and each follower answers it: with many ranges, each Raft round
// carries about one entry per range, so these notices and their answers
// were a third to a half of all Raft messages.
//
// A follower needs the commit index only to apply, and nothing waits for a
// follower to apply: clients are answered by the leader, reads are served
// by the leader. The index reaches it anyway with the next append (under
// load, within a round) or, at the latest, with the next heartbeat, which
// carries it for a follower whose log matches (every tick, and the
// quiescing leader's last heartbeats).
//
// So the leader drops the empty appends it sends a follower in
// StateReplicate. Raft makes those for three reasons: a commit (to every
// follower, or to one whose acknowledgement shows it lags the commit
// index), a leadership transfer, and a heartbeat response from a follower
// that has not acknowledged the whole log. The last is a probe whose answer
// Raft needs: the appends it is waiting for may have been lost, and only
// the probe's rejection makes it send them again. So an empty append is
// kept for a follower whose heartbeat response was stepped since the
// leader's last Ready, and every one while a leadership transfer is under
// way. Empty appends to a follower that is not replicating (probing, or
// waiting for a snapshot) are always probes, and are kept.
//
// Notices that commit a configuration change are sent, though: a follower
// must apply a new configuration at once, or it may campaign under the old
// one. A leader transfer right after a replica move sends MsgTimeoutNow to
// the new replica as soon as its log is complete; if it has not yet applied
// the entry that leaves the joint configuration, its election needs a
// quorum of the outgoing configuration too, which the move may have taken
// away, and the range is leaderless for an election timeout
// (TestFollowerThatMissedAMoveCatchesUpWithTheReplicaItAdded caught it).
//
// Dropping is safe because Raft tolerates lost messages.

// noticeState tracks configuration changes in the log and the commit index
// the leader last sent notices for.
type noticeState struct {
	lastConfIndex uint64 // index of the last configuration change appended
	noticed       uint64 // highest commit index of notices looked at
	// heartbeatAcks are the followers whose heartbeat responses were
	// stepped since the leader's last Ready: raft may answer each with a
	// probe.
	heartbeatAcks []uint64
}

// sawHeartbeatResponse records that a follower's heartbeat response is
// about to be stepped.
func (s *noticeState) sawHeartbeatResponse(from uint64) {
	if !slices.Contains(s.heartbeatAcks, from) {
		s.heartbeatAcks = append(s.heartbeatAcks, from)
	}
}

// sawEntries records configuration changes among entries being appended.
func (s *noticeState) sawEntries(ents []raftpb.Entry) {
	for _, e := range ents {
		if e.Type == raftpb.EntryConfChange || e.Type == raftpb.EntryConfChangeV2 {
			s.lastConfIndex = e.Index
		}
	}
}

// commitsConfChange reports whether a notice up to commit is the first to
// commit the last configuration change.
func (s *noticeState) commitsConfChange(commit uint64) bool {
	return s.lastConfIndex > s.noticed && s.lastConfIndex <= commit
}

// dropCommitNoticesLocked removes commit notices from a leader's messages.
func (r *Replica) dropCommitNoticesLocked(msgs []raftpb.Message) []raftpb.Message {
	var droppable map[uint64]bool // built at the first empty append
	out := msgs[:0]
	notices := &r.mu.notices
	noticed := notices.noticed
	for _, m := range msgs {
		if m.Type == raftpb.MsgApp {
			noticed = max(noticed, m.Commit)
		}
		if m.Type == raftpb.MsgApp && len(m.Entries) == 0 &&
			!notices.commitsConfChange(m.Commit) && !slices.Contains(notices.heartbeatAcks, m.To) {
			if droppable == nil {
				droppable = r.noticeDroppableLocked()
			}
			if droppable[m.To] {
				continue
			}
		}
		out = append(out, m)
	}
	notices.noticed = noticed
	notices.heartbeatAcks = notices.heartbeatAcks[:0]
	return out
}

// noticeDroppableLocked returns the followers whose empty appends may be
// dropped: those in StateReplicate, and none while a leadership transfer is
// under way.
func (r *Replica) noticeDroppableLocked() map[uint64]bool {
	droppable := make(map[uint64]bool, 4)
	if r.mu.rn.BasicStatus().LeadTransferee != raft.None {
		return droppable
	}
	r.mu.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		droppable[id] = pr.State == tracker.StateReplicate
	})
	return droppable
}

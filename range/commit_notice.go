package replica

import (
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

// Commit notices. When an entry commits, etcd's raft leader at once sends
// every follower an append without entries that only carries the new commit
// index, and each follower answers it: with many ranges, each Raft round
// carries about one entry per range, so these notices were half of all Raft
// messages (3.1 per applied entry per node, 1.6 without them).
//
// A follower needs the commit index only to apply, and nothing waits for a
// follower to apply: clients are answered by the leader, reads are served
// by the leader. The index reaches it anyway with the next append (under
// load, within a round) or, at the latest, with the next heartbeat, which
// always carries it for a follower whose log matches (every tick, and the
// quiescing leader's last heartbeats).
//
// So the leader drops an empty append to a follower in StateReplicate that
// has acknowledged every entry up to the append's index: it can learn nothing
// from it but the commit index. Any other empty append is a probe whose
// answer Raft needs to move on (a follower that is not replicating, or one
// whose appends may have been lost: Raft sends an empty append after a
// heartbeat response to find out), and it is sent.
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
	var acked map[uint64]uint64 // replicating follower -> its match index
	out := msgs[:0]
	noticed := r.mu.notices.noticed
	for _, m := range msgs {
		if m.Type == raftpb.MsgApp {
			noticed = max(noticed, m.Commit)
		}
		if m.Type == raftpb.MsgApp && len(m.Entries) == 0 && !r.mu.notices.commitsConfChange(m.Commit) {
			if acked == nil {
				acked = make(map[uint64]uint64, 4)
				r.mu.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
					if pr.State == tracker.StateReplicate {
						acked[id] = pr.Match
					}
				})
			}
			if match, ok := acked[m.To]; ok && match >= m.Index {
				continue
			}
		}
		out = append(out, m)
	}
	r.mu.notices.noticed = noticed
	return out
}

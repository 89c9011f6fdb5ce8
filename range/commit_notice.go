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
// Dropping is safe because Raft tolerates lost messages.

// dropCommitNoticesLocked removes commit notices from a leader's messages.
func (r *Replica) dropCommitNoticesLocked(msgs []raftpb.Message) []raftpb.Message {
	var acked map[uint64]uint64 // replicating follower -> its match index
	out := msgs[:0]
	for _, m := range msgs {
		if m.Type == raftpb.MsgApp && len(m.Entries) == 0 {
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
	return out
}

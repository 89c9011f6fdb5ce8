package node

import (
	"time"

	"go.etcd.io/raft/v3/raftpb"

	replica "github.com/raftrix/raftrixdb/range"
)

// After a restart a replica has forgotten the leader it followed, and Raft
// would grant its vote at once, possibly while that leader still holds a
// lease the replica's acknowledgements helped to earn (range/lease.go). So
// for one election timeout after the node starts, a replica that has ever
// had a leader ignores vote requests, as it would have before the restart.
// Replicas of fresh ranges take part in the first election at once.

// leaseDuration is how long a ReadIndex round keeps a leader's lease: two
// ticks short of an election timeout (range/lease.go); 0 (no leases) with
// elections too short for a margin.
func (c *Config) leaseDuration() time.Duration {
	if c.ElectionTicks <= 3 {
		return 0
	}
	return time.Duration(c.ElectionTicks-2) * c.TickInterval
}

// transferCampaign marks the vote requests of a leadership transfer's
// target (etcd raft's campaignTransfer). Those are let through: only a
// leader that gave up its lease sends the target its go-ahead, and a stale
// one's target asks at a term the restarted replica has already seen.
const transferCampaign = "CampaignTransfer"

// ignoresVote reports whether r must not see the vote request m yet.
func (n *Node) ignoresVote(r *replica.Replica, m *raftpb.Message) bool {
	if !delayableVote(m) {
		return false
	}
	return n.cfg.Clock.Now().Before(n.votesFrom) && !r.NeverElected()
}

// delayableVote reports whether m is a vote request the delay applies to:
// a (pre-)vote that is not a transfer's.
func delayableVote(m *raftpb.Message) bool {
	return (m.Type == raftpb.MsgVote || m.Type == raftpb.MsgPreVote) && string(m.Context) != transferCampaign
}

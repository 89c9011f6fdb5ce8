package node

import (
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// TestVoteDelayAppliesToCampaignsOnly: a restarted node holds back the
// (pre-)votes of ordinary campaigns, but not a leadership transfer's (its
// leader gave up its lease) nor any other message.
func TestVoteDelayAppliesToCampaignsOnly(t *testing.T) {
	for _, tc := range []struct {
		m    raftpb.Message
		want bool
	}{
		{raftpb.Message{Type: raftpb.MsgVote}, true},
		{raftpb.Message{Type: raftpb.MsgPreVote}, true},
		{raftpb.Message{Type: raftpb.MsgVote, Context: []byte(transferCampaign)}, false},
		{raftpb.Message{Type: raftpb.MsgPreVote, Context: []byte(transferCampaign)}, false},
		{raftpb.Message{Type: raftpb.MsgApp}, false},
		{raftpb.Message{Type: raftpb.MsgHeartbeat}, false},
		{raftpb.Message{Type: raftpb.MsgVoteResp}, false},
	} {
		if got := delayableVote(&tc.m); got != tc.want {
			t.Errorf("%v (context %q): delayable %v, want %v", tc.m.Type, tc.m.Context, got, tc.want)
		}
	}
}

package replica

import (
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// TestLeaderDropsCommitNotices drives one put round by round: once both
// followers acknowledged the entry, the leader's commit sends them nothing
// (no empty append), so they lag its commit index until the next heartbeat
// brings it. (TestProbeAfterHeartbeatIsKept covers the empty append that
// must still go out: the probe of a follower whose appends were lost.)
func TestLeaderDropsCommitNotices(t *testing.T) {
	g := newLedGroup(t)
	done := g.startPut(1, "b", "2")
	g.handleReady(1) // the leader appends and sends the entry
	g.deliver()
	g.handleReady(2) // both followers persist and acknowledge it
	g.handleReady(3)
	g.deliver()
	g.handleReady(1) // the leader commits and applies it
	<-done
	for _, m := range g.queue {
		if m.Type == raftpb.MsgApp && len(m.Entries) == 0 {
			t.Errorf("leader sent a commit notice: %+v", m)
		}
	}
	lead := g.reps[1].Status()
	for id := uint64(2); id <= 3; id++ {
		if st := g.reps[id].Status(); st.Commit >= lead.Commit {
			t.Fatalf("replica %d knows commit %d without a notice (leader %d)", id, st.Commit, lead.Commit)
		}
	}

	g.queue = append(g.queue, g.reps[1].Tick()...) // a heartbeat
	g.handleReady(1)
	var heartbeats int
	for _, m := range g.queue {
		if m.Type == raftpb.MsgHeartbeat {
			heartbeats++
		}
	}
	if heartbeats != 2 {
		t.Fatalf("a leader's tick sent %d heartbeats, want 2", heartbeats)
	}
	g.deliver()
	for id := uint64(2); id <= 3; id++ {
		g.handleReady(id)
		if st := g.reps[id].Status(); st.Commit != lead.Commit || st.Applied != lead.Commit {
			t.Errorf("replica %d after a heartbeat: commit %d applied %d, leader commit %d", id, st.Commit, st.Applied, lead.Commit)
		}
	}
}

// TestProbeAfterHeartbeatIsKept: the leader commits an entry that one
// follower acknowledged while its append to the other was lost. The commit
// sends the other follower nothing, though it has not acknowledged the
// entry. Its heartbeat response is answered with an empty append, the probe
// whose rejection makes the leader send the lost entry again: that one goes
// out, and the follower catches up.
func TestProbeAfterHeartbeatIsKept(t *testing.T) {
	g := newLedGroup(t)
	done := g.startPut(1, "b", "2")
	g.handleReady(1) // the leader appends and sends the entry
	g.drop = func(m raftpb.Message) bool { return m.To == 3 }
	g.deliver() // the append to 3 is lost
	g.drop = nil
	g.handleReady(2)
	g.deliver()
	g.handleReady(1) // 2's acknowledgement commits the entry
	<-done
	emptyAppends := func(to uint64) (n int) {
		for _, m := range g.queue {
			if m.Type == raftpb.MsgApp && m.To == to && len(m.Entries) == 0 {
				n++
			}
		}
		return n
	}
	if n := emptyAppends(3); n != 0 {
		t.Fatalf("the commit sent %d commit notices to the follower still appending", n)
	}
	g.deliver()

	g.queue = append(g.queue, g.reps[1].Tick()...) // a heartbeat
	g.handleReady(1)
	g.deliver()
	g.handleReady(2) // the heartbeat responses
	g.handleReady(3)
	g.deliver()
	g.handleReady(1)
	if n := emptyAppends(3); n != 1 {
		t.Fatalf("the leader answered 3's heartbeat response with %d empty appends, want the probe", n)
	}
	g.pump()
	if got := g.get(3, "b"); got == nil || string(got.Value) != "2" {
		t.Fatalf("follower 3 did not catch up: b = %v", got)
	}
	g.checkConverged(1, 2, 3)
}

// TestNoticeThatCommitsAConfChangeIsKept: the first notice whose commit
// index covers the last configuration change appended is sent; earlier and
// later ones are not singled out.
func TestNoticeThatCommitsAConfChangeIsKept(t *testing.T) {
	var s noticeState
	s.sawEntries([]raftpb.Entry{{Index: 5}, {Index: 6, Type: raftpb.EntryConfChangeV2}, {Index: 7}})
	if s.commitsConfChange(5) {
		t.Error("a notice up to 5 commits the change at 6")
	}
	if !s.commitsConfChange(6) || !s.commitsConfChange(7) {
		t.Error("a notice up to 6 or 7 does not commit the change at 6")
	}
	s.noticed = 6 // notices up to 6 went out
	if s.commitsConfChange(8) {
		t.Error("a later notice still counts as the one committing the change")
	}
	s.sawEntries([]raftpb.Entry{{Index: 9, Type: raftpb.EntryConfChange}})
	if !s.commitsConfChange(9) {
		t.Error("a notice up to 9 does not commit the change at 9")
	}
}

package replica

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3/raftpb"
)

// TestLeaderKeepsLogForActiveFollower: the log is truncated in the apply
// batch once it outgrows the threshold, on followers freely, but a leader
// keeps the entries that a follower it is still replicating to (one that
// answers heartbeats) lacks, so that the follower catches up from the log
// and is sent no snapshot.
func TestLeaderKeepsLogForActiveFollower(t *testing.T) {
	g := newTestGroup(t, Config{LogTruncateThreshold: 10}, testDescriptor(1, "", ""))
	g.campaign(1)
	g.mustPut(1, "k", "v", 0)
	g.checkConverged(1, 2, 3)
	behind := g.reps[3].Status()

	// Replica 3 answers heartbeats but receives no appends.
	g.drop = func(m raftpb.Message) bool { return m.To == 3 && m.Type == raftpb.MsgApp }
	for i := 0; i < 40; i++ {
		g.mustPut(1, fmt.Sprintf("k%02d", i), "v", 0)
	}
	if g.dropped == 0 {
		t.Fatal("no append to replica 3 was dropped")
	}
	g.checkConverged(1, 2)
	lead, follower := g.reps[1].Status(), g.reps[2].Status()
	if st := g.reps[3].Status(); st.LastIndex != behind.LastIndex {
		t.Fatalf("replica 3 received appends: last index %d, was %d", st.LastIndex, behind.LastIndex)
	}
	if lead.Applied-lead.FirstIndex+1 <= 10 {
		t.Fatalf("leader's log holds %d entries, no more than the threshold: nothing was kept back", lead.Applied-lead.FirstIndex+1)
	}
	if _, err := g.reps[1].storage.Entries(behind.LastIndex+1, lead.LastIndex+1, 1<<20); err != nil {
		t.Fatalf("leader dropped entries replica 3 still lacks (first index %d, replica 3 at %d): %v", lead.FirstIndex, behind.LastIndex, err)
	}
	if follower.FirstIndex <= behind.LastIndex+1 {
		t.Fatalf("follower 2 kept its log back (first index %d); only a leader keeps entries for others", follower.FirstIndex)
	}

	g.drop = nil
	// The next heartbeat's answer shows the leader how far behind replica
	// 3 is; it then sends what 3 lacks.
	for i := 0; i < 3 && g.reps[3].Status().Applied < lead.Applied; i++ {
		g.queue = append(g.queue, g.reps[1].Tick()...)
		g.pump()
	}
	g.checkConverged(1, 2, 3)
	if len(g.snaps) != 0 {
		t.Fatalf("replica 3 was sent a snapshot instead of the log: %+v", g.snaps)
	}
	if lead := g.reps[1].Status(); lead.Applied-lead.FirstIndex+1 > 10 {
		// Truncation happens when entries apply: one more write lets the
		// leader drop what replica 3 now has.
		g.mustPut(1, "after", "v", 0)
		if lead := g.reps[1].Status(); lead.Applied-lead.FirstIndex+1 > 10 {
			t.Fatalf("leader's log still holds %d entries after replica 3 caught up", lead.Applied-lead.FirstIndex+1)
		}
	}
}

// TestTruncationSparesEntriesBeingApplied: a follower that learns of many
// committed entries at once applies them in one Ready. Until that Ready is
// advanced raft still counts them unapplied, and a campaign in between
// scans them for configuration changes; truncating them with the apply
// batch made raft panic ("error scanning unapplied entries"; make
// test-kill, a restarted node). The truncation stops at what was applied
// before the Ready.
func TestTruncationSparesEntriesBeingApplied(t *testing.T) {
	g := newTestGroup(t, Config{LogTruncateThreshold: 10}, testDescriptor(1, "", ""))
	g.campaign(1)
	g.mustPut(1, "k", "v", 0)
	g.checkConverged(1, 2, 3)

	// Replica 3 receives no appends while 30 writes commit on 1 and 2; it
	// answers heartbeats, so the leader keeps the log for it.
	g.drop = func(m raftpb.Message) bool { return m.To == 3 && m.Type == raftpb.MsgApp }
	for i := 0; i < 30; i++ {
		g.mustPut(1, fmt.Sprintf("k%02d", i), "v", 0)
	}
	g.drop = nil
	lead := g.reps[1].Status()
	ents, err := g.reps[1].storage.Entries(g.reps[3].Status().LastIndex+1, lead.LastIndex+1, 1<<30)
	if err != nil {
		t.Fatalf("leader no longer holds the entries replica 3 lacks: %v", err)
	}
	// Hand replica 3 every entry and the commit index in one append, as a
	// leader catching a follower up does.
	r := g.reps[3]
	prevIndex := ents[0].Index - 1
	prevTerm, err := g.reps[1].storage.Term(prevIndex)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Step(raftpb.Message{
		Type: raftpb.MsgApp, From: 1, To: 3, Term: lead.Term,
		Index: prevIndex, LogTerm: prevTerm, Entries: ents, Commit: lead.Commit,
	}); err != nil {
		t.Fatal(err)
	}
	// The first Ready appends the entries; once the append is durable, the
	// next applies them.
	rd, ok := r.Ready()
	if !ok {
		t.Fatal("replica 3 has no Ready after the append")
	}
	if _, _, err := persistAppend(g.dbs[3], r, rd); err != nil {
		t.Fatal(err)
	}
	if rd, ok = r.Ready(); !ok || rd.Apply == nil || len(rd.Apply.Entries) <= 10 {
		n := 0
		if rd.Apply != nil {
			n = len(rd.Apply.Entries)
		}
		t.Fatalf("replica 3's Ready applies %d entries, want more than the threshold", n)
	}
	ab := g.dbs[3].NewIndexedBatch()
	defer ab.Close()
	staged, err := r.StageApply(ab, rd.Apply)
	if err != nil {
		t.Fatal(err)
	}
	if err := ab.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	// A campaign before the Ready is advanced (a MsgTimeoutNow from a
	// leader transferring its lead, say) must find the entries.
	func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("campaign while the Ready applies: raft panicked: %v", p)
			}
		}()
		err = r.mu.rn.Campaign()
	}()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := staged.Finish(); err != nil {
		t.Fatal(err)
	}
}

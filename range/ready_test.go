package replica

import (
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// TestNothingWaitsOnlyForAnUnsyncedAppend pins what the node's pipelined
// rounds rely on (ready.go): a follower's acknowledgement of an append is
// not among the messages sent at once but among the append's responses,
// delivered after its sync; and a leader applies an entry only once its own
// append of it is acknowledged, even when both followers already have it
// durably (a quorum without the leader).
func TestNothingWaitsOnlyForAnUnsyncedAppend(t *testing.T) {
	g := newTestGroup(t, Config{}, testDescriptor(1, "", ""))
	g.campaign(1)
	g.mustPut(1, "k", "v", 0)
	g.checkConverged(1, 2, 3)

	data, err := proto.Marshal(&pb.RaftCommand{Op: &pb.RaftCommand_Put{Put: &pb.PutRequest{Key: []byte("k2"), Value: []byte("v")}}})
	if err != nil {
		t.Fatal(err)
	}
	leader := g.reps[1]
	leader.mu.Lock()
	err = leader.mu.rn.Propose(data)
	leader.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	// The leader's round: its appends to the followers go at once; its
	// append is written but not acknowledged (as if its sync were slow).
	rd, ok := leader.Ready()
	if !ok || rd.Append == nil || len(rd.Append.Entries) != 1 {
		t.Fatalf("leader's Ready: want an append of one entry, got %+v", rd.Append)
	}
	index := rd.Append.Entries[0].Index
	if _, err := writeAppend(g.dbs[1], leader, rd.Append); err != nil {
		t.Fatal(err)
	}
	leaderAcks := rd.Append.Responses
	g.queue = append(g.queue, rd.Messages...)
	g.deliver()

	// Each follower's acknowledgement waits for its append.
	for _, id := range []uint64{2, 3} {
		rd, ok := g.reps[id].Ready()
		if !ok || rd.Append == nil {
			t.Fatalf("follower %d: want a Ready with an append", id)
		}
		for _, m := range rd.Messages {
			if m.Type == raftpb.MsgAppResp {
				t.Fatalf("follower %d: an append acknowledgement is sent before its append is durable", id)
			}
		}
		remote, _, err := persistAppend(g.dbs[id], g.reps[id], rd)
		if err != nil {
			t.Fatal(err)
		}
		acked := false
		for _, m := range remote {
			acked = acked || (m.Type == raftpb.MsgAppResp && m.To == 1 && m.Index >= index && !m.Reject)
		}
		if !acked {
			t.Fatalf("follower %d: no acknowledgement of index %d among the append's responses %v", id, index, remote)
		}
		g.queue = append(g.queue, remote...)
	}
	g.deliver()

	// Both followers acknowledged: the entry is committed, but the leader
	// has not had its own append acknowledged, so it applies nothing.
	for i := 0; i < 3; i++ {
		rd, ok := leader.Ready()
		if !ok {
			break
		}
		if rd.Apply != nil {
			for _, e := range rd.Apply.Entries {
				if e.Index >= index {
					t.Fatalf("leader applies entry %d before its own append of it is acknowledged", e.Index)
				}
			}
		}
		g.queue = append(g.queue, rd.Messages...)
		// Its later appends (the new commit index) are written but, like
		// the first, not yet acknowledged: responses go in order.
		if rd.Append != nil {
			if _, err := writeAppend(g.dbs[1], leader, rd.Append); err != nil {
				t.Fatal(err)
			}
			leaderAcks = append(leaderAcks, rd.Append.Responses...)
		}
	}
	if st := leader.Status(); st.Applied >= index {
		t.Fatalf("leader applied index %d before its own append of %d was acknowledged", st.Applied, index)
	}
	// Once it is, the entry applies.
	g.queue = append(g.queue, leader.DeliverLocal(leaderAcks)...)
	g.pump()
	if st := leader.Status(); st.Applied < index {
		t.Fatalf("leader applied %d after its append was acknowledged, want at least %d", st.Applied, index)
	}
	g.checkConverged(1, 2, 3)
}

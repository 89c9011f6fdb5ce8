package replica

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// TestProposalsOfOneRoundShareTheirAppends: commands proposed between two
// Readies of the leader reach each follower in one append, and each is
// applied and answered.
func TestProposalsOfOneRoundShareTheirAppends(t *testing.T) {
	g := newLedGroup(t)
	const n = 3
	var done []<-chan struct{}
	for i := range n {
		done = append(done, g.startPut(1, fmt.Sprintf("k%d", i), "v"))
	}
	g.handleReady(1)
	appends := map[uint64][]int{} // follower -> entries of each append
	for _, m := range g.queue {
		if m.Type == raftpb.MsgApp {
			appends[m.To] = append(appends[m.To], len(m.Entries))
		}
	}
	for id := uint64(2); id <= 3; id++ {
		if got := appends[id]; len(got) != 1 || got[0] != n {
			t.Errorf("follower %d got appends of %v entries, want one of %d", id, got, n)
		}
	}
	g.pump()
	for _, d := range done {
		<-d
	}
	for i := range n {
		if kv := g.get(2, fmt.Sprintf("k%d", i)); kv == nil {
			t.Errorf("k%d not applied on a follower", i)
		}
	}
}

// TestBufferedProposalRefusedWhenLeadershipIsLost: a command proposed while
// the replica led, but not yet handed to Raft when it stepped down, is
// refused with a NotLeaderError (never proposed, so safe to retry), not
// reported as an ambiguous result.
func TestBufferedProposalRefusedWhenLeadershipIsLost(t *testing.T) {
	g := newLedGroup(t)
	var err error
	done := g.start(func() {
		_, err = g.reps[1].Propose(context.Background(), &pb.RaftCommand{Op: &pb.RaftCommand_Put{Put: &pb.PutRequest{Key: []byte("b"), Value: []byte("2")}}})
	})
	// A heartbeat of a later term: replica 1 follows replica 2 now.
	term := g.reps[1].Status().Term
	if serr := g.reps[1].Step(raftpb.Message{Type: raftpb.MsgHeartbeat, From: 2, To: 1, Term: term + 1}); serr != nil {
		t.Fatal(serr)
	}
	g.handleReady(1)
	<-done
	var nle *NotLeaderError
	if !errors.As(err, &nle) {
		t.Fatalf("Propose after losing leadership: %v, want a NotLeaderError", err)
	}
	if kv := g.get(1, "b"); kv != nil {
		t.Fatalf("the refused command was applied: %v", kv)
	}
}

package replica

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

func putCmd(key string, rev int64) *pb.RaftCommand {
	return &pb.RaftCommand{Revision: rev, Op: &pb.RaftCommand_Put{Put: &pb.PutRequest{Key: []byte(key), Value: []byte(key)}}}
}

// queuedRiders reports how many commands wait on replica id to ride.
func (g *testGroup) queuedRiders(id uint64) int {
	r := g.reps[id]
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.mu.riders)
}

// TestRidersGoInTheNextProposal: commands queued with ProposeRider are
// applied in the entry of the range's next proposal, ahead of it, on every
// replica, and each waiter gets its own result.
func TestRidersGoInTheNextProposal(t *testing.T) {
	g := newTestGroup(t, Config{}, testDescriptor(1, "", ""))
	g.campaign(1)
	before := g.reps[1].storage.Applied().Index

	type answer struct {
		res Result
		err error
	}
	answers := make(chan answer, 2)
	for i, key := range []string{"r1", "r2"} {
		go func() {
			res, err := g.reps[1].ProposeRider(context.Background(), putCmd(key, int64(100+i)), time.Hour)
			answers <- answer{res, err}
		}()
	}
	deadline := time.Now().Add(waitTimeout)
	for g.queuedRiders(1) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("riders never queued")
		}
		time.Sleep(time.Millisecond)
	}
	carrier := g.mustPut(1, "c", "c", 50)
	var riderRevs []int64
	for range 2 {
		select {
		case a := <-answers:
			if a.err != nil || a.res.Err != nil {
				t.Fatalf("rider: %v / %v", a.err, a.res.Err)
			}
			riderRevs = append(riderRevs, a.res.KV.ModRevision)
		case <-time.After(waitTimeout):
			t.Fatal("a rider was not answered with its carrier")
		}
	}
	if after := g.reps[1].storage.Applied().Index; after != before+1 {
		t.Fatalf("applied index %d -> %d, want one entry for the carrier and its riders", before, after)
	}
	for _, rev := range riderRevs {
		if rev >= carrier.ModRevision {
			t.Fatalf("rider revision %d not below the carrier's %d: riders apply first", rev, carrier.ModRevision)
		}
	}
	for id := uint64(1); id <= 3; id++ {
		for _, key := range []string{"r1", "r2", "c"} {
			if g.get(id, key) == nil {
				t.Fatalf("replica %d lacks %q", id, key)
			}
		}
	}
	g.checkConverged(1, 2, 3)
	if n := g.queuedRiders(1); n != 0 {
		t.Fatalf("%d riders still queued", n)
	}
}

// TestRiderWithoutCarrierProposesItself: a rider that finds no carrier
// within its wait is proposed on its own.
func TestRiderWithoutCarrierProposesItself(t *testing.T) {
	g := newTestGroup(t, Config{}, testDescriptor(1, "", ""))
	g.campaign(1)
	var res Result
	var err error
	g.do(func() {
		res, err = g.reps[1].ProposeRider(context.Background(), putCmd("alone", 100), 5*time.Millisecond)
	})
	if err != nil || res.Err != nil || res.KV == nil {
		t.Fatalf("lone rider: %+v / %v", res, err)
	}
	for id := uint64(1); id <= 3; id++ {
		if g.get(id, "alone") == nil {
			t.Fatalf("replica %d lacks the lone rider's key", id)
		}
	}
}

// TestRiderRefusals: a follower refuses a rider as it refuses a proposal,
// and a rider whose context ends leaves the queue.
func TestRiderRefusals(t *testing.T) {
	g := newTestGroup(t, Config{}, testDescriptor(1, "", ""))
	g.campaign(1)
	var nle *NotLeaderError
	if _, err := g.reps[2].ProposeRider(context.Background(), putCmd("x", 1), time.Hour); !errors.As(err, &nle) || nle.LeaderNodeID != 1 {
		t.Fatalf("rider on a follower: %v, want a NotLeaderError naming node 1", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := g.reps[1].ProposeRider(ctx, putCmd("y", 1), time.Hour); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("rider whose context ends: %v", err)
	}
	if n := g.queuedRiders(1); n != 0 {
		t.Fatalf("%d riders still queued after their context ended", n)
	}
	g.mustPut(1, "z", "z", 10)
	if g.get(1, "y") != nil {
		t.Fatal("an abandoned rider rode with the next proposal")
	}
}

// TestRidersAreBounded: once maxRiders wait, the next one proposes at once.
func TestRidersAreBounded(t *testing.T) {
	g := newTestGroup(t, Config{}, testDescriptor(1, "", ""))
	g.campaign(1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range maxRiders {
		go func() { _, _ = g.reps[1].ProposeRider(ctx, putCmd(fmt.Sprintf("q%02d", i), 1), time.Hour) }()
	}
	deadline := time.Now().Add(waitTimeout)
	for g.queuedRiders(1) < maxRiders {
		if time.Now().After(deadline) {
			t.Fatal("riders never queued")
		}
		time.Sleep(time.Millisecond)
	}
	var res Result
	var err error
	g.do(func() { res, err = g.reps[1].ProposeRider(context.Background(), putCmd("over", 1), time.Hour) })
	if err != nil || res.Err != nil {
		t.Fatalf("rider over the bound: %+v / %v", res, err)
	}
	if n := g.queuedRiders(1); n != 0 {
		t.Fatalf("%d riders still queued; the one over the bound should have carried them", n)
	}
}

package replica

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

const testLease = 800 * time.Millisecond

// leaseRead calls ReadIndex on the leader without pumping the group: only a
// read served under the lease can return; one that needs a round gives up.
func leaseRead(g *testGroup) error {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	return g.reps[1].ReadIndex(ctx)
}

// heartbeatsQueued counts the heartbeats waiting in the group's queue.
func heartbeatsQueued(g *testGroup) int {
	n := 0
	for _, m := range g.queue {
		if m.Type == raftpb.MsgHeartbeat {
			n++
		}
	}
	return n
}

// TestLeaseReads: after a ReadIndex round, the leader serves reads without
// a round for LeaseDuration from when the round was sent, at its commit
// index (so they see every write committed before); then it needs a round
// again. A read in the second half of the lease asks for a round in the
// background that extends it.
func TestLeaseReads(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	g := newTestGroup(t, Config{LeaseDuration: testLease, Now: clock.Now}, testDescriptor(1, "", ""))
	g.campaign(1)
	g.mustPut(1, "a", "1", 1)

	if err := leaseRead(g); err == nil {
		t.Fatal("a read was served without a round before any round")
	}
	g.pump() // the queued read's round completes: the lease starts
	var err error
	g.do(func() { err = g.reps[1].ReadIndex(context.Background()) })
	if err != nil {
		t.Fatal(err)
	}
	served := g.reps[1].LeaseReads()

	// Inside the lease: no round, and the read sees a write committed
	// since (the replica waits for its apply).
	g.mustPut(1, "a", "2", 2)
	clock.advance(testLease / 4)
	if err := leaseRead(g); err != nil {
		t.Fatalf("read inside the lease: %v", err)
	}
	if got := g.reps[1].LeaseReads(); got != served+1 {
		t.Fatalf("lease reads %d, want %d", got, served+1)
	}
	if n := heartbeatsQueued(g); n != 0 {
		t.Fatalf("a lease read sent %d heartbeats", n)
	}
	if got := g.get(1, "a"); string(got.GetValue()) != "2" {
		t.Fatalf("a = %v after the lease read", got)
	}

	// In the second half a read still needs no round but asks for one in
	// the background, which extends the lease from when it was sent.
	clock.advance(testLease / 2)
	if err := leaseRead(g); err != nil {
		t.Fatalf("read in the second half of the lease: %v", err)
	}
	g.pump()
	clock.advance(testLease / 2) // past the first lease, inside the refreshed one
	if err := leaseRead(g); err != nil {
		t.Fatalf("read inside the refreshed lease: %v", err)
	}

	// Past the lease, a read waits for a round.
	clock.advance(testLease)
	before := g.reps[1].LeaseReads()
	if err := leaseRead(g); err == nil {
		t.Fatal("a read was served after the lease ended")
	}
	if g.reps[1].LeaseReads() != before {
		t.Fatal("a read after the lease counted as a lease read")
	}
}

// TestTransferEndsLease: the target of a leadership transfer campaigns with
// a flag that voters obey inside their lease, so a leader that starts a
// transfer serves no more reads under its lease, even if the transfer does
// not happen.
func TestTransferEndsLease(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	g := newTestGroup(t, Config{LeaseDuration: testLease, Now: clock.Now}, testDescriptor(1, "", ""))
	g.campaign(1)
	g.mustPut(1, "a", "1", 1)
	var err error
	g.do(func() { err = g.reps[1].ReadIndex(context.Background()) })
	if err != nil {
		t.Fatal(err)
	}
	if err := leaseRead(g); err != nil {
		t.Fatalf("read inside the lease: %v", err)
	}
	// The target is cut off: the transfer cannot complete.
	g.cut[2] = true
	if err := g.reps[1].TransferLeader(2); err != nil {
		t.Fatal(err)
	}
	before := g.reps[1].LeaseReads()
	if err := leaseRead(g); err == nil {
		t.Fatal("a read was served under the lease after a transfer started")
	}
	if g.reps[1].LeaseReads() != before {
		t.Fatal("a read after a transfer counted as a lease read")
	}
}

// TestNoLeaseWithoutDuration: LeaseDuration 0 turns leases off.
func TestNoLeaseWithoutDuration(t *testing.T) {
	g := newTestGroup(t, Config{}, testDescriptor(1, "", ""))
	g.campaign(1)
	g.mustPut(1, "a", "1", 1)
	var err error
	g.do(func() { err = g.reps[1].ReadIndex(context.Background()) })
	if err != nil {
		t.Fatal(err)
	}
	if err := leaseRead(g); err == nil || g.reps[1].LeaseReads() != 0 {
		t.Fatalf("a read was served without a round with leases off: %v", err)
	}
}

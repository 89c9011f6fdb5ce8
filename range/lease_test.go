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

// roundDone starts a group on cfg whose leader (replica 1) has written a
// key and completed a ReadIndex round.
func roundDone(t *testing.T, cfg Config) *testGroup {
	g := newTestGroup(t, cfg, testDescriptor(1, "", ""))
	g.campaign(1)
	g.mustPut(1, "a", "1", 1)
	var err error
	g.do(func() { err = g.reps[1].ReadIndex(context.Background()) })
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// mustNeedRound checks that a read on the leader is not served under a
// lease (the situation is what).
func mustNeedRound(t *testing.T, g *testGroup, what string) {
	t.Helper()
	before := g.reps[1].LeaseReads()
	if err := leaseRead(g); err == nil || g.reps[1].LeaseReads() != before {
		t.Fatalf("a read was served under the lease %s (err %v)", what, err)
	}
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
	mustNeedRound(t, g, "before any round")
	g.pump() // the queued read's round completes: the lease starts
	served := g.reps[1].LeaseReads()

	// Inside the lease, also after a write: no round, no heartbeat.
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
	mustNeedRound(t, g, "after it ended")
}

// TestTransferEndsLease: the target of a leadership transfer campaigns with
// a flag that voters obey inside their lease, so a leader that starts a
// transfer serves no more reads under its lease, even if the transfer does
// not happen.
func TestTransferEndsLease(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	g := roundDone(t, Config{LeaseDuration: testLease, Now: clock.Now})
	if err := leaseRead(g); err != nil {
		t.Fatalf("read inside the lease: %v", err)
	}
	// The target is cut off: the transfer cannot complete.
	g.cut[2] = true
	if err := g.reps[1].TransferLeader(2); err != nil {
		t.Fatal(err)
	}
	mustNeedRound(t, g, "after a transfer started")
}

// TestNoLeaseWithoutDuration: LeaseDuration 0 turns leases off.
func TestNoLeaseWithoutDuration(t *testing.T) {
	mustNeedRound(t, roundDone(t, Config{}), "with leases off")
}

package node_test

import (
	"context"
	"testing"
	"time"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// TestIdleRangesQuiesceAndWake: once idle, every range stops ticking on
// every node; a write wakes its range and succeeds; killing a node wakes
// the ranges it led, which elect new leaders.
func TestIdleRangesQuiesceAndWake(t *testing.T) {
	const ranges = 8
	c, ctx := startCluster(t, ranges)
	all := []uint64{1, 2, 3}
	ticking := func(id uint64) float64 { return c.Metric(id, "raftrix_ranges_ticking") }
	if err := waitUntil(ctx, 10*time.Second, func() bool {
		return ticking(1) == 0 && ticking(2) == 0 && ticking(3) == 0
	}); err != nil {
		t.Fatalf("ranges still ticking: %v %v %v", ticking(1), ticking(2), ticking(3))
	}
	if _, err := c.KV(1).Put(ctx, &pb.PutRequest{Key: keyInRange(3, ranges, "k"), Value: []byte("v")}); err != nil {
		t.Fatalf("write to a quiesced range: %v", err)
	}
	// The range quiesces again.
	if err := waitUntil(ctx, 10*time.Second, func() bool { return ticking(1)+ticking(2)+ticking(3) == 0 }); err != nil {
		t.Fatal("the written range did not quiesce again")
	}
	leaders, err := c.WaitLeaders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	victim := leaders[4]
	c.Stop(victim)
	live := others(all, victim)
	// Every range the victim led must elect a new leader.
	for i := 0; i < ranges; i++ {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := putRetry(wctx, c, live, keyInRange(i, ranges, "after"), []byte("x"))
		cancel()
		if err != nil {
			t.Fatalf("range %d after killing node %d: %v", i+1, victim, err)
		}
	}
}

package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/raftrix/raftrixdb/client"
	"github.com/raftrix/raftrixdb/internal/testcluster"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Routing against a real in-process cluster: 3 nodes, 8 ranges split
// evenly by the first key byte's top three bits (plus the system range).
// These tests live in client_test so that they run after the bank test,
// which then starts on an unloaded machine as it did before them.

// rangeKeys returns one key in each of the 8 initial ranges.
func rangeKeys() [][]byte {
	var keys [][]byte
	for i := 0; i < 8; i++ {
		keys = append(keys, []byte{byte(i * 0x20), 0x10, 'k'})
	}
	return keys
}

func startRouted(t *testing.T, timeout time.Duration) (*testcluster.Cluster, *client.DB, context.Context) {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, InitialRanges: 8})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	if _, err := c.WaitLeaders(ctx); err != nil {
		t.Fatal(err)
	}
	db, err := client.New(client.Config{Endpoints: []string{c.Addr(1), c.Addr(2), c.Addr(3)}, RequestTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return c, db, ctx
}

// cleanPass puts and gets every key once and reports an error unless every
// answer came straight from the leader the cache named, with no lookup.
func cleanPass(ctx context.Context, db *client.DB, keys [][]byte) error {
	before := client.StatsOf(db)
	for _, k := range keys {
		if _, err := db.Put(ctx, k, []byte("v")); err != nil {
			return err
		}
		if _, err := db.Get(ctx, k); err != nil {
			return err
		}
	}
	d := client.StatsOf(db).Sub(before)
	if d.Direct != int64(2*len(keys)) || d.Lookups != 0 {
		return fmt.Errorf("%d of %d answers direct, %d forwarded, %d lookups", d.Direct, 2*len(keys), d.Forwarded, d.Lookups)
	}
	return nil
}

// eventually retries f until it succeeds or d passes.
func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkCacheLeaders compares the cached leader of each key's range with the
// leaders the nodes report.
func checkCacheLeaders(ctx context.Context, c *testcluster.Cluster, db *client.DB, keys [][]byte) error {
	leaders, err := c.WaitLeaders(ctx)
	if err != nil {
		return err
	}
	for _, k := range keys {
		e, ok := client.CachedRangeOf(db, k)
		if !ok {
			return fmt.Errorf("key %x not cached", k)
		}
		if want := leaders[e.RangeID]; e.LeaderID != want {
			return fmt.Errorf("range %d: cached leader %d, nodes report %d", e.RangeID, e.LeaderID, want)
		}
	}
	return nil
}

// warm fills the cache until requests go straight to the leaders. (Right
// after start placement may not know every range yet, and it moves leaders
// to balance them.)
func warm(t *testing.T, ctx context.Context, c *testcluster.Cluster, db *client.DB, keys [][]byte) {
	t.Helper()
	eventually(t, 15*time.Second, func() error {
		if err := cleanPass(ctx, db, keys); err != nil {
			return err
		}
		return checkCacheLeaders(ctx, c, db, keys)
	})
}

// TestRoutingDirectToLeader: once the cache is warm, every request is
// answered by the node the client sent it to, which is the range's leader
// as the nodes report it, and no lookup is made.
func TestRoutingDirectToLeader(t *testing.T) {
	c, db, ctx := startRouted(t, 10*time.Second)
	keys := rangeKeys()
	warm(t, ctx, c, db, keys)
	if got := len(client.CachedRanges(db)); got != len(keys) {
		t.Fatalf("%d cached ranges, want %d", got, len(keys))
	}
	// Scans and single-range transactions use the cache too.
	before := client.StatsOf(db)
	kvs, err := db.Scan(ctx, nil, nil, 0)
	if err != nil || len(kvs) != len(keys) {
		t.Fatalf("scan: %d keys, %v; want %d", len(kvs), err, len(keys))
	}
	if err := db.Txn(ctx, func(tx *client.Txn) error {
		if _, _, err := tx.Get(ctx, keys[2]); err != nil {
			return err
		}
		tx.Put(keys[2], []byte("w"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if d := client.StatsOf(db).Sub(before); d.Lookups != 0 || d.Forwarded != 0 {
		t.Fatalf("scan and transaction: %d lookups, %d forwarded answers; want none", d.Lookups, d.Forwarded)
	}
	t.Logf("stats: %+v", client.StatsOf(db))
}

// TestRoutingLeaderTransfer: after a leader moves, the first request reaches
// the new leader through the old one, whose answer names it; the next goes
// straight there. No placement lookup is involved.
func TestRoutingLeaderTransfer(t *testing.T) {
	c, db, ctx := startRouted(t, 10*time.Second)
	keys := rangeKeys()
	warm(t, ctx, c, db, keys)

	leaders, err := c.WaitLeaders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key := keys[3]
	e, _ := client.CachedRangeOf(db, key)
	rangeID, from := e.RangeID, e.LeaderID
	// Move it to the node leading fewest ranges, so that placement's leader
	// balancing has no reason to move it back.
	count := map[uint64]int{}
	for _, l := range leaders {
		count[l]++
	}
	to := uint64(0)
	for id := uint64(1); id <= 3; id++ {
		if id != from && (to == 0 || count[id] < count[to]) {
			to = id
		}
	}
	if _, err := c.Admin(to).TransferLeader(ctx, &pb.TransferLeaderRequest{RangeId: rangeID, ToNode: to}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		l, err := c.WaitLeaders(ctx)
		if err != nil || l[rangeID] != to {
			return fmt.Errorf("range %d led by %d, want %d (%v)", rangeID, l[rangeID], to, err)
		}
		return nil
	})
	t.Logf("moved range %d from node %d to node %d", rangeID, from, to)

	before := client.StatsOf(db)
	if _, err := db.Put(ctx, key, []byte("after-transfer")); err != nil {
		t.Fatal(err)
	}
	if e, _ := client.CachedRangeOf(db, key); e.LeaderID != to || e.LeaderAddr != c.Addr(to) {
		t.Fatalf("cached leader %d at %s after one request, want %d at %s", e.LeaderID, e.LeaderAddr, to, c.Addr(to))
	}
	for i := 0; i < 3; i++ {
		if _, err := db.Put(ctx, key, []byte("again")); err != nil {
			t.Fatal(err)
		}
	}
	d := client.StatsOf(db).Sub(before)
	if d.Forwarded != 1 || d.Direct != 3 || d.Lookups != 0 {
		t.Fatalf("after the transfer: %d forwarded, %d direct, %d lookups; want 1, 3, 0", d.Forwarded, d.Direct, d.Lookups)
	}
}

// TestRoutingSplit: after a split, a request for a key of the new right-hand
// range is answered from a range the cache did not name; the client drops
// the entry, looks the key up, and learns both halves.
func TestRoutingSplit(t *testing.T) {
	c, db, ctx := startRouted(t, 10*time.Second)
	keys := rangeKeys()
	right := []byte{0x50, 0x10, 'k'} // in the same range as keys[2]
	keys = append(keys, right)
	warm(t, ctx, c, db, keys)
	before, _ := client.CachedRangeOf(db, right)

	resp, err := c.Admin(1).SplitRange(ctx, &pb.SplitRangeRequest{Key: []byte{0x50}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Left.RangeId != before.RangeID {
		t.Fatalf("split range %d, cached %d", resp.Left.RangeId, before.RangeID)
	}
	t.Logf("split range %d at 0x50: right range %d", resp.Left.RangeId, resp.Right.RangeId)

	s := client.StatsOf(db)
	eventually(t, 10*time.Second, func() error {
		if err := cleanPass(ctx, db, keys); err != nil {
			return err
		}
		if err := checkCacheLeaders(ctx, c, db, keys); err != nil {
			return err
		}
		l, _ := client.CachedRangeOf(db, keys[2])
		r, _ := client.CachedRangeOf(db, right)
		if r.RangeID != resp.Right.RangeId || l.RangeID != resp.Left.RangeId || string(l.End) != "\x50" {
			return fmt.Errorf("cached left %+v, right %+v", l, r)
		}
		return nil
	})
	if d := client.StatsOf(db).Sub(s); d.Lookups == 0 {
		t.Fatal("the split was learned without a lookup?")
	}
}

// TestRoutingLeaderNodeKilled: when the node leading ranges dies, requests
// carry on within their deadline (through a seed while the ranges elect),
// and the cache ends up naming the new leaders.
func TestRoutingLeaderNodeKilled(t *testing.T) {
	const timeout = 5 * time.Second
	c, db, ctx := startRouted(t, timeout)
	keys := rangeKeys()
	warm(t, ctx, c, db, keys)
	e, _ := client.CachedRangeOf(db, keys[0])
	victim := e.LeaderID
	c.Stop(victim)
	t.Logf("stopped node %d", victim)

	start := time.Now()
	for _, k := range keys {
		// Each call has the client's RequestTimeout.
		if _, err := db.Get(context.Background(), k); err != nil {
			t.Fatalf("get %x after the kill: %v", k, err)
		}
		if _, err := db.Put(context.Background(), k, []byte("after-kill")); err != nil {
			t.Fatalf("put %x after the kill: %v", k, err)
		}
	}
	t.Logf("every range served again %v after the kill", time.Since(start))

	eventually(t, 10*time.Second, func() error {
		if err := cleanPass(ctx, db, keys); err != nil {
			return err
		}
		return checkCacheLeaders(ctx, c, db, keys)
	})
	for _, e := range client.CachedRanges(db) {
		if e.LeaderID == victim {
			t.Fatalf("range %d still cached as led by the dead node", e.RangeID)
		}
	}
}

package txn_test

import (
	"context"
	"testing"
	"time"

	"github.com/raftrix/raftrixdb/internal/hlc"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
	"github.com/raftrix/raftrixdb/txn"
)

// Settling intents: who may abort what, and what a settle's answer may be
// trusted for. Each test reproduces a bug that was found and fixed, and
// keeps it fixed.

// TestSettleOfStaleIntentAfterRecordDeleted: a reader that met an intent
// just before the coordinator resolved it and deleted the record (what
// Coordinator.resolveParts does right after the commit point) settles the
// intent from a record that no longer exists. Settle then reports PENDING
// (or, for a transaction older than the expiry, writes and reports
// ABORTED), although the transaction committed; node.readSettled and
// scanOneRange (node/server_kv.go) return the committed value they read
// with the intent, i.e. the value from before a transaction that was
// acknowledged before the read began: a stale linearizable read.
func TestSettleOfStaleIntentAfterRecordDeleted(t *testing.T) {
	c := startCluster(t, 3, 2, crashExpiry)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	keys := [][]byte{keyInRange(0, 2, "p"), keyInRange(1, 2, "q")}
	for _, k := range keys {
		if _, err := c.KV(1).Put(ctx, &pb.PutRequest{Key: k, Value: []byte("old")}); err != nil {
			t.Fatal(err)
		}
	}
	h := newHandTxn(c, 1, "stale", keys)
	h.prepare(ctx, t, 0)
	h.prepare(ctx, t, 1)
	// The reader's view: the intent on q, seen before resolution.
	stale, err := intentOn(ctx, c, 2, keys[1])
	if err != nil || stale == nil {
		t.Fatalf("intent on q: %v, %v", stale, err)
	}
	rec, err := h.end(ctx, true, max(time.Now().UnixNano(), h.lastRev+1))
	if err != nil || rec.Status != pb.TxnRecord_COMMITTED {
		t.Fatalf("commit: %v, %v", rec, err)
	}
	// The coordinator resolves q, then p deleting the record.
	if err := h.resolve(ctx, rec, 1, false); err != nil {
		t.Fatal(err)
	}
	if err := h.resolve(ctx, rec, 0, true); err != nil {
		t.Fatal(err)
	}
	n := c.Node(2)
	co := txn.NewCoordinator(txn.Config{Sender: n, Lookup: n, Clock: hlc.New(hlc.SystemClock{}), Expiry: crashExpiry})
	defer co.Close()
	// Settle's contract: PENDING or ABORTED means the transaction had not
	// committed when the record was read, and the intent may be gone by
	// now. A reader must then trust the value it read with the intent only
	// if the same intent is still there. node.readSettled does that: a
	// linearizable Get after such a Settle returns the committed value.
	check := func(when string) {
		t.Helper()
		got, err := co.Settle(ctx, keys[1], stale, false)
		if err != nil {
			t.Fatal(err)
		}
		in, err := intentOn(ctx, c, 3, keys[1])
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != pb.TxnRecord_COMMITTED && in != nil {
			t.Errorf("%s: Settle says %s and the intent is still there, but the transaction committed", when, got.Status)
		}
		for id := uint64(1); id <= 3; id++ {
			resp, err := c.KV(id).Get(ctx, &pb.GetRequest{Key: keys[1]})
			if err != nil || string(resp.GetKv().GetValue()) != "new" {
				t.Errorf("%s: linearizable Get through node %d after the commit: %v, %v", when, id, resp, err)
			}
		}
	}
	check("young transaction")
	// Once the transaction is older than the expiry, the push even writes
	// an ABORTED record for the committed transaction.
	time.Sleep(crashExpiry + 50*time.Millisecond)
	check("old transaction")
}

// TestSettleFromForwardedRequest: a Get, Put or Scan that reaches a node
// which does not lead the key's range is forwarded to the leader, marked as
// forwarded in its gRPC metadata. The leader meets an intent and settles it
// with Coordinator.Settle, whose push goes to the leader of the primary's
// range through node.Evaluate, with the same context: it still carries the
// incoming forwarded mark, so onLeader refuses to forward the push and
// returns NotLeaderError. The request fails as a routing error, the first
// node retries, and so on until the request's deadline: reads and writes
// through a non-leader node hang on any intent whose primary is led by
// another node, and such an intent is never settled that way.
func TestSettleFromForwardedRequest(t *testing.T) {
	const ranges = 6
	c := startCluster(t, 3, ranges, crashExpiry)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leaders, err := c.waitLeaders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, q := -1, -1
	for i := 0; i < ranges && p < 0; i++ {
		for j := 0; j < ranges; j++ {
			if leaders[uint64(i+1)] != leaders[uint64(j+1)] {
				p, q = i, j
				break
			}
		}
	}
	if p < 0 {
		t.Skipf("every range is led by one node: %v", leaders)
	}
	keys := [][]byte{keyInRange(p, ranges, "fwd"), keyInRange(q, ranges, "fwd")}
	for _, k := range keys {
		if _, err := putLeader(ctx, c, k, "old"); err != nil {
			t.Fatal(err)
		}
	}
	h := newHandTxn(c, 1, "fwd", keys)
	h.prepare(ctx, t, 0)
	h.prepare(ctx, t, 1)
	// The coordinator dies. Node via does not lead q's range, so it
	// forwards requests for keys[1] to that range's leader.
	via := leaders[uint64(p+1)]
	t.Logf("primary in range %d led by node %d, key in range %d led by node %d", p+1, via, q+1, leaders[uint64(q+1)])

	rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
	resp, err := c.KV(via).Get(rctx, &pb.GetRequest{Key: keys[1]})
	rcancel()
	if err != nil || string(resp.GetKv().GetValue()) != "old" {
		t.Errorf("get through node %d: %v, %v; want %q", via, resp, err, "old")
	}
	start, end := rangeSpan(q, ranges)
	rctx, rcancel = context.WithTimeout(ctx, 3*time.Second)
	_, err = c.KV(via).Scan(rctx, &pb.ScanRequest{Start: start, End: end})
	rcancel()
	if err != nil {
		t.Errorf("scan through node %d: %v", via, err)
	}
	rctx, rcancel = context.WithTimeout(ctx, 3*time.Second)
	_, err = c.KV(via).Put(rctx, &pb.PutRequest{Key: keys[1], Value: []byte("after")})
	rcancel()
	if err != nil {
		t.Errorf("put through node %d over an expired transaction's intent: %v", via, err)
	}
}

// TestRetryKeepsItsRecordAgainstPushers: the coordinator retries a
// transaction with a new ID but its original priority, and the priority is
// what intents carry and what Settle passes as the transaction's start
// (TxnPush.txn_timestamp). A retry of a transaction that first started more
// than the expiry ago therefore looks "old and without a record" during the
// normal window between a participant's prepare and the primary's: any
// reader or writer (even a younger transaction) that meets its intent then
// writes an ABORTED record, and the live attempt fails. The oldest
// transaction, which wound-wait promises will win eventually, is the one
// exposed to this.
func TestRetryKeepsItsRecordAgainstPushers(t *testing.T) {
	const ranges = 2
	c := startCluster(t, 3, ranges, crashExpiry)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	keys := [][]byte{keyInRange(0, ranges, "retry"), keyInRange(1, ranges, "retry")}
	for _, k := range keys {
		if _, err := putLeader(ctx, c, k, "old"); err != nil {
			t.Fatal(err)
		}
	}
	h := newHandTxn(c, 1, "retry", keys)
	h.ts -= 2 * int64(crashExpiry) // the first attempt started long ago
	// This attempt, just started, prepares the other participant first.
	h.prepare(ctx, t, 1)
	// A reader meets the intent.
	if kvs, err := readLeaders(ctx, c, keys[1:]); err != nil || string(kvs[0].GetValue()) != "old" {
		t.Fatalf("read: %v, %v", kvs, err)
	}
	// The primary's prepare, a moment later.
	resp, err := h.eval(ctx, h.prepareReq(0))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Prepare.GetAborted() {
		t.Errorf("a live attempt %v old was aborted before its record was written", time.Duration(time.Now().UnixNano()-h.hb))
	}
}

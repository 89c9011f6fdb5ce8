package node_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftrix/raftrixdb/internal/testcluster"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

func putOp(k, v []byte) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_Put{Put: &pb.PutRequest{Key: k, Value: v}}}
}

func getOp(k []byte) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_Get{Get: &pb.GetRequest{Key: k}}}
}

func delOp(k []byte) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_Delete{Delete: &pb.DeleteRequest{Key: k}}}
}

func absent(k []byte) *pb.Compare {
	return &pb.Compare{Key: k, Target: pb.Compare_VERSION, Result: pb.Compare_EQUAL, Version: 0}
}

func mustGet(t *testing.T, ctx context.Context, kv pb.KVClient, k []byte) *pb.KeyValue {
	t.Helper()
	resp, err := kv.Get(ctx, &pb.GetRequest{Key: k})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Kv
}

func TestTxnAcrossRangesIsAtomicAndSharesRevision(t *testing.T) {
	const ranges = 8
	c, ctx := startCluster(t, ranges)
	keys := [][]byte{keyInRange(0, ranges, "a"), keyInRange(3, ranges, "b"), keyInRange(5, ranges, "c"), keyInRange(7, ranges, "d")}
	req := &pb.TxnRequest{}
	for i, k := range keys {
		req.Compare = append(req.Compare, absent(k))
		req.Success = append(req.Success, putOp(k, []byte(fmt.Sprint(i))))
	}
	req.Success = append(req.Success, getOp(keys[0]))
	req.Failure = []*pb.RequestOp{getOp(keys[1])}
	resp, err := c.KV(2).Txn(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Succeeded || resp.Revision == 0 || len(resp.Responses) != 5 {
		t.Fatalf("first txn: %v", resp)
	}
	if got := resp.Responses[4].GetGet().GetKv(); string(got.GetValue()) != "0" || got.ModRevision != resp.Revision {
		t.Fatalf("get after put in the same branch: %v", got)
	}
	for i, k := range keys {
		kv := mustGet(t, ctx, c.KV(uint64(i%3+1)), k)
		if string(kv.GetValue()) != fmt.Sprint(i) || kv.ModRevision != resp.Revision || kv.Version != 1 {
			t.Fatalf("key %d after commit: %v (txn revision %d)", i, kv, resp.Revision)
		}
	}
	// Same transaction again: the compares fail, the failure branch runs,
	// nothing is written.
	resp2, err := c.KV(3).Txn(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp2.Succeeded || resp2.Revision != 0 || string(resp2.Responses[0].GetGet().GetKv().GetValue()) != "1" {
		t.Fatalf("second txn: %v", resp2)
	}
	for i, k := range keys {
		if kv := mustGet(t, ctx, c.KV(1), k); kv.Version != 1 {
			t.Fatalf("key %d written by a failed txn: %v", i, kv)
		}
	}
	// A later plain write to one of the keys gets a higher revision.
	p, err := c.KV(1).Put(ctx, &pb.PutRequest{Key: keys[2], Value: []byte("x")})
	if err != nil || p.Kv.ModRevision <= resp.Revision {
		t.Fatalf("put after txn: %v, %v", p, err)
	}
}

func TestTxnInOneRangeUsesOnePhase(t *testing.T) {
	c, ctx := startCluster(t, 4)
	a, b := keyInRange(1, 4, "x"), keyInRange(1, 4, "y")
	resp, err := c.KV(1).Txn(ctx, &pb.TxnRequest{
		Compare: []*pb.Compare{absent(a)},
		Success: []*pb.RequestOp{putOp(a, []byte("1")), putOp(b, []byte("2"))},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Succeeded {
		t.Fatalf("1PC txn: %v", resp)
	}
	del, err := c.KV(1).Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{getOp(b), delOp(b)}})
	if err != nil || !del.Responses[1].GetDelete().GetDeleted() || string(del.Responses[0].GetGet().GetKv().GetValue()) != "2" {
		t.Fatalf("1PC delete: %v, %v", del, err)
	}
	if kv := mustGet(t, ctx, c.KV(2), a); kv.ModRevision != resp.Revision {
		t.Fatalf("1PC revision: %v vs %d", kv, resp.Revision)
	}
	if g, _ := c.KV(3).Get(ctx, &pb.GetRequest{Key: b}); g.Found {
		t.Fatalf("deleted key still there: %v", g)
	}
}

// TestTxnRacingSplitStaysAtomic: transactions write the same value to two
// keys in different ranges while the range of one of them is split again
// and again; readers (one transaction of two gets) must never see the keys
// differ, and the last acknowledged value must be on both.
func TestTxnRacingSplitStaysAtomic(t *testing.T) {
	const ranges = 4
	c, ctx := startCluster(t, ranges)
	a := keyInRange(0, ranges, "a-key")
	b := keyInRange(2, ranges, "b-key")
	writeBoth := func(v string) (*pb.TxnResponse, error) {
		return c.KV(1).Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{putOp(a, []byte(v)), putOp(b, []byte(v))}})
	}
	if _, err := writeBoth("0"); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var lastAcked atomic.Int64
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // writer
		defer wg.Done()
		for i := 1; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			if _, err := writeBoth(fmt.Sprint(i)); err == nil {
				lastAcked.Store(int64(i))
			}
		}
	}()
	var bad atomic.Value
	go func() { // reader
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			resp, err := c.KV(2).Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{getOp(a), getOp(b)}})
			if err != nil {
				continue
			}
			va := string(resp.Responses[0].GetGet().GetKv().GetValue())
			vb := string(resp.Responses[1].GetGet().GetKv().GetValue())
			if va != vb {
				bad.Store(fmt.Sprintf("a=%q b=%q", va, vb))
			}
		}
	}()
	// Split a's range repeatedly, each time just below a (so a moves into
	// the new right-hand range while transactions hold intents on it).
	for i := 0; i < 5; i++ {
		time.Sleep(150 * time.Millisecond)
		split := append(append([]byte(nil), a[:2]...), byte('a'-5+i))
		if _, err := c.Admin(3).SplitRange(ctx, &pb.SplitRangeRequest{Key: split}); err != nil {
			t.Fatalf("split %d at %q: %v", i, split, err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	close(done)
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatalf("a transaction was seen half applied: %v", v)
	}
	ka, kb := mustGet(t, ctx, c.KV(3), a), mustGet(t, ctx, c.KV(3), b)
	if string(ka.Value) != string(kb.Value) || ka.ModRevision != kb.ModRevision {
		t.Fatalf("after the run a=%v b=%v", ka, kb)
	}
	// The last acknowledged write, or a later one whose answer was lost.
	if got, _ := strconv.Atoi(string(ka.Value)); int64(got) < lastAcked.Load() || lastAcked.Load() == 0 {
		t.Fatalf("final value %q, last acknowledged %d", ka.Value, lastAcked.Load())
	}
}

// TestTxnRecordsAreDeletedOnceResolved: a cross-range transaction's record
// outlives its intents, then goes: the coordinator resolves the primary's
// range with the commit and deletes records in batches. Nothing may be
// left once the transactions are done: neither intents nor records.
func TestTxnRecordsAreDeletedOnceResolved(t *testing.T) {
	const ranges = 4
	c, ctx := startCluster(t, ranges)
	var keys [][]byte
	for i := 0; i < 20; i++ {
		a, b := keyInRange(i%ranges, ranges, fmt.Sprint("r", i)), keyInRange((i+1)%ranges, ranges, fmt.Sprint("r", i))
		resp, err := c.KV(uint64(1+i%3)).Txn(ctx, &pb.TxnRequest{
			Compare: []*pb.Compare{absent(a), absent(b)},
			Success: []*pb.RequestOp{putOp(a, []byte("v")), putOp(b, []byte("v"))},
		})
		if err != nil || !resp.Succeeded {
			t.Fatalf("txn %d: %v, %v", i, resp, err)
		}
		keys = append(keys, a, b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := 0
		for _, id := range []uint64{1, 2, 3} {
			n, err := c.Node(id).TxnRecords()
			if err != nil {
				t.Fatal(err)
			}
			left += n
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d transaction records left on the nodes 10s after the transactions", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, k := range keys {
		if kv := mustGet(t, ctx, c.KV(1), k); string(kv.GetValue()) != "v" {
			t.Fatalf("%q = %v after the transactions", k, kv)
		}
	}
}

// TestTxnWhenNoNodeHoldsEveryRange: with four nodes and replicas moved so
// that no node holds a replica of all four ranges a transaction touches,
// every node still coordinates it: ranges with no local replica are found
// through placement (remote_ranges.go). Before, the node handed the whole
// transaction to a node holding all of them, and there was none (the
// nemesis bank workload, 4 nodes).
func TestTxnWhenNoNodeHoldsEveryRange(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Nodes: 4, InitialRanges: 4, ManualPlacement: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leaders, err := c.WaitLeaders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Ranges 1-3 each move one replica to node 4: 1 {2,3,4}, 2 {1,3,4},
	// 3 {1,2,4}, 4 {1,2,3}.
	for rangeID, from := range map[uint64]uint64{1: 1, 2: 2, 3: 3} {
		if _, err := c.Admin(leaders[rangeID]).MoveReplica(ctx, &pb.MoveReplicaRequest{RangeId: rangeID, FromNode: from, ToNode: 4}); err != nil {
			t.Fatalf("move range %d from node %d to 4: %v", rangeID, from, err)
		}
	}
	keys := [][]byte{[]byte("\x00\x00k"), []byte("\x40\x00k"), []byte("\x80\x00k"), []byte("\xc0\x00k")}
	for id := uint64(1); id <= 4; id++ {
		held := 0
		for rangeID := uint64(1); rangeID <= 4; rangeID++ {
			if c.Node(id).LocalReplica(rangeID) != nil {
				held++
			}
		}
		if held == 4 {
			t.Fatalf("node %d still holds all four ranges", id)
		}
	}
	for id := uint64(1); id <= 4; id++ {
		value := []byte(fmt.Sprintf("via node %d", id))
		req := &pb.TxnRequest{}
		for _, k := range keys {
			req.Success = append(req.Success, putOp(k, value))
		}
		// Placement learns the moved ranges from heartbeats: retry while
		// it has not yet.
		var resp *pb.TxnResponse
		for {
			resp, err = c.KV(id).Txn(ctx, req)
			if err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil || !resp.Succeeded {
			t.Fatalf("transaction via node %d: %v, %v", id, resp, err)
		}
		for _, k := range keys {
			if kv := mustGet(t, ctx, c.KV(1), k); string(kv.GetValue()) != string(value) {
				t.Fatalf("after the transaction via node %d, %q = %q", id, k, kv.GetValue())
			}
		}
	}
}

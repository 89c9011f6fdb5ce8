package node_test

import (
	"context"
	"fmt"
	"testing"

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

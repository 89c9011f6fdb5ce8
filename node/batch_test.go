package node_test

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

func putItem(key, value string) *pb.BatchItem {
	return &pb.BatchItem{Request: &pb.BatchItem_Put{Put: &pb.PutRequest{Key: []byte(key), Value: []byte(value)}}}
}

// TestBatchRunsEachItemAsItsOwnCall sends one batch to one node with puts
// to keys of all ranges (most led by other nodes, so forwarded), a get, a
// delete, a failing compare-and-set, an invalid put and a two-range
// transaction: each item gets the
// answer its own call would have had, and the good ones take effect.
func TestBatchRunsEachItemAsItsOwnCall(t *testing.T) {
	c, ctx := startCluster(t, 4)
	kv := c.KV(1)
	if _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("gone"), Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("read"), Value: []byte("r")}); err != nil {
		t.Fatal(err)
	}
	var items []*pb.BatchItem
	var putKeys []string
	for i := 0; i < 4; i++ {
		key := string([]byte{byte(0x20 + i*0x40)}) + "-batch" // one in each of the 4 ranges
		putKeys = append(putKeys, key)
		items = append(items, putItem(key, "v"+key))
	}
	rev := int64(1) // never the key's mod revision
	items = append(items,
		&pb.BatchItem{Request: &pb.BatchItem_Get{Get: &pb.GetRequest{Key: []byte("read")}}},
		&pb.BatchItem{Request: &pb.BatchItem_Delete{Delete: &pb.DeleteRequest{Key: []byte("gone")}}},
		&pb.BatchItem{Request: &pb.BatchItem_Put{Put: &pb.PutRequest{Key: []byte("read"), Value: []byte("no"), ExpectedModRevision: &rev}}},
		putItem("", "empty key"),
		// A transaction over two ranges, coordinated by the node.
		&pb.BatchItem{Request: &pb.BatchItem_Txn{Txn: &pb.TxnRequest{Success: []*pb.RequestOp{
			{Request: &pb.RequestOp_Put{Put: &pb.PutRequest{Key: []byte("\x10-txn"), Value: []byte("t1")}}},
			{Request: &pb.RequestOp_Put{Put: &pb.PutRequest{Key: []byte("\xd0-txn"), Value: []byte("t2")}}},
		}}}},
	)
	resp, err := kv.Batch(ctx, &pb.BatchRequest{Items: items})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Results) != len(items) {
		t.Fatalf("%d results for %d items", len(resp.Results), len(items))
	}
	for i := range putKeys {
		if p := resp.Results[i].GetPut(); p == nil || p.Kv.GetModRevision() == 0 {
			t.Errorf("put %q: result %v", putKeys[i], resp.Results[i])
		}
	}
	if g := resp.Results[4].GetGet(); g == nil || !g.Found || string(g.Kv.Value) != "r" {
		t.Errorf("get: result %v", resp.Results[4])
	}
	if d := resp.Results[5].GetDelete(); d == nil || !d.Deleted {
		t.Errorf("delete: result %v", resp.Results[5])
	}
	if e := resp.Results[6].GetError(); e == nil || codes.Code(e.Code) != codes.FailedPrecondition {
		t.Errorf("failed compare: result %v, want FailedPrecondition", resp.Results[6])
	}
	if e := resp.Results[7].GetError(); e == nil || codes.Code(e.Code) != codes.InvalidArgument || !strings.Contains(e.Message, "key must not be empty") {
		t.Errorf("empty key: result %v, want InvalidArgument", resp.Results[7])
	}

	if tx := resp.Results[8].GetTxn(); tx == nil || !tx.Succeeded {
		t.Errorf("txn: result %v", resp.Results[8])
	}

	// The effects, read back one by one from another node.
	kv2 := c.KV(2)
	for _, key := range putKeys {
		g, err := kv2.Get(ctx, &pb.GetRequest{Key: []byte(key)})
		if err != nil || !g.Found || string(g.Kv.Value) != "v"+key {
			t.Errorf("get %q after the batch: %v, %v", key, g, err)
		}
	}
	for key, want := range map[string]string{"\x10-txn": "t1", "\xd0-txn": "t2"} {
		g, err := kv2.Get(ctx, &pb.GetRequest{Key: []byte(key)})
		if err != nil || string(g.Kv.GetValue()) != want {
			t.Errorf("get %q after the batch's txn: %v, %v", key, g, err)
		}
	}
	if g, err := kv2.Get(ctx, &pb.GetRequest{Key: []byte("gone")}); err != nil || g.Found {
		t.Errorf("deleted key: %v, %v", g, err)
	}
	if g, err := kv2.Get(ctx, &pb.GetRequest{Key: []byte("read")}); err != nil || string(g.Kv.GetValue()) != "r" {
		t.Errorf("key of the failed compare: %v, %v", g, err)
	}
}

// TestMalformedBatchIsRefusedAndChangesNothing: a batch that is malformed
// as a whole runs none of its items, good ones included.
func TestMalformedBatchIsRefusedAndChangesNothing(t *testing.T) {
	c, ctx := startCluster(t, 1)
	kv := c.KV(1)
	many := make([]*pb.BatchItem, 1001)
	for i := range many {
		many[i] = putItem(fmt.Sprintf("many-%d", i), "v")
	}
	cases := []struct {
		name  string
		items []*pb.BatchItem
		msg   string
	}{
		{"no items", nil, "batch has no items"},
		{"too many items", many, "batch has 1001 items, more than the limit of 1000"},
		{"item without a request", []*pb.BatchItem{putItem("good", "v"), {}}, "batch item 1 has no request"},
		{"negative timeout", []*pb.BatchItem{putItem("good", "v"), {Request: putItem("x", "v").Request, TimeoutMicros: -1}}, "batch item 1 has a negative timeout"},
	}
	for _, tc := range cases {
		_, err := kv.Batch(ctx, &pb.BatchRequest{Items: tc.items})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.msg) {
			t.Errorf("%s: got %v, want InvalidArgument %q", tc.name, err, tc.msg)
		}
	}
	for _, key := range []string{"good", "x", "many-0", "many-1000"} {
		g, err := kv.Get(ctx, &pb.GetRequest{Key: []byte(key)})
		if err != nil || g.Found {
			t.Errorf("key %q after refused batches: %v, %v", key, g, err)
		}
	}
}

// TestEvaluateBatchRunsEachCommand sends transaction pushes for records on
// keys of all four ranges (most led by other nodes, so each command is
// forwarded on) in one EvaluateBatch: each comes back as its own Evaluate
// would (a forced push of an unknown transaction aborts it). A malformed
// batch is refused as a whole.
func TestEvaluateBatchRunsEachCommand(t *testing.T) {
	c, ctx := startCluster(t, 4)
	internal := pb.NewInternalClient(c.Conn(1))
	req := &pb.EvaluateBatchRequest{}
	for i := 0; i < 4; i++ {
		key := []byte{byte(0x20 + i*0x40), 'p'}
		req.Requests = append(req.Requests, &pb.InternalRequest{Key: key, Op: &pb.InternalRequest_Push{Push: &pb.TxnPush{
			TxnId: []byte(fmt.Sprintf("txn-%d", i)), PrimaryKey: key, Force: true,
		}}})
		req.TimeoutMicros = append(req.TimeoutMicros, 0)
	}
	resp, err := internal.EvaluateBatch(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Results) != 4 {
		t.Fatalf("%d results for 4 commands", len(resp.Results))
	}
	for i, r := range resp.Results {
		if r.Error != nil || r.Response.GetRecord().GetStatus() != pb.TxnRecord_ABORTED {
			t.Errorf("push %d: %v, want an ABORTED record", i, r)
		}
	}

	bad := []struct {
		name string
		req  *pb.EvaluateBatchRequest
		msg  string
	}{
		{"no commands", &pb.EvaluateBatchRequest{}, "batch has no commands"},
		{"timeouts missing", &pb.EvaluateBatchRequest{Requests: req.Requests}, "batch has 4 commands and 0 timeouts"},
		{"no routing key", &pb.EvaluateBatchRequest{Requests: []*pb.InternalRequest{req.Requests[0], {}}, TimeoutMicros: []int64{0, 0}}, "batch command 1 has no routing key"},
	}
	for _, tc := range bad {
		_, err := internal.EvaluateBatch(ctx, tc.req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.msg) {
			t.Errorf("%s: got %v, want InvalidArgument %q", tc.name, err, tc.msg)
		}
	}
}

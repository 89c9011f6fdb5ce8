package node_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/raftrix/raftrixdb/node"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// startLimited starts one node with limits and returns a KV client to it.
func startLimited(t *testing.T, limits node.Limits) (pb.KVClient, context.Context) {
	t.Helper()
	n := startNodes(t, 1, 0, 2, func(_ uint64, cfg *node.Config) { cfg.Limits = limits })[0]
	waitReady(t, n)
	conn, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return pb.NewKVClient(conn), ctx
}

// wantRefused checks that err has code and a message containing msg.
func wantRefused(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), msg) {
		t.Fatalf("got %v; want %v containing %q", err, code, msg)
	}
}

// wantAbsent checks that none of keys was written.
func wantAbsent(t *testing.T, ctx context.Context, kv pb.KVClient, keys ...[]byte) {
	t.Helper()
	for _, k := range keys {
		resp, err := kv.Get(ctx, &pb.GetRequest{Key: k})
		if err != nil || resp.Found {
			t.Fatalf("key %q after a refused request: %v, %v", k, resp, err)
		}
	}
}

func TestTxnLimits(t *testing.T) {
	kv, ctx := startLimited(t, node.Limits{MaxTxnOps: 4, MaxTxnBytes: 64})
	key := func(i int) []byte { return fmt.Appendf(nil, "k%d", i) }
	puts := func(n, valueSize int) []*pb.RequestOp {
		var ops []*pb.RequestOp
		for i := range n {
			ops = append(ops, putOp(key(i), bytes.Repeat([]byte("v"), valueSize)))
		}
		return ops
	}

	// Operations: compares and both branches count.
	_, err := kv.Txn(ctx, &pb.TxnRequest{Compare: []*pb.Compare{absent(key(0))}, Success: puts(3, 1), Failure: []*pb.RequestOp{getOp(key(0))}})
	wantRefused(t, err, codes.InvalidArgument, "transaction has 5 compares and operations; the limit is 4")
	// Bytes: 4 keys of 2 bytes and 4 values of 15 bytes are 68.
	_, err = kv.Txn(ctx, &pb.TxnRequest{Success: puts(4, 15)})
	wantRefused(t, err, codes.InvalidArgument, "transaction carries 68 bytes of keys and values; the limit is 64")
	// Compared values count too: 2 + 63 bytes.
	_, err = kv.Txn(ctx, &pb.TxnRequest{Compare: []*pb.Compare{{Key: key(0), Target: pb.Compare_VALUE, Value: bytes.Repeat([]byte("c"), 63)}}})
	wantRefused(t, err, codes.InvalidArgument, "transaction carries 65 bytes of keys and values; the limit is 64")
	wantAbsent(t, ctx, kv, key(0), key(1), key(2), key(3))

	// At the limits: 4 operations of 16 bytes each.
	resp, err := kv.Txn(ctx, &pb.TxnRequest{Success: puts(4, 14)})
	if err != nil || !resp.Succeeded {
		t.Fatalf("a transaction at the limits: %v, %v", resp, err)
	}
}

func TestRequestSizeLimit(t *testing.T) {
	const limit = 6 << 20
	kv, ctx := startLimited(t, node.Limits{MaxRequestSize: limit})

	// Over the request size: gRPC refuses the message before decoding it.
	_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("big"), Value: make([]byte, limit)})
	wantRefused(t, err, codes.ResourceExhausted, fmt.Sprintf("vs. %d)", limit))
	_, err = kv.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{putOp([]byte("big"), make([]byte, limit))}})
	wantRefused(t, err, codes.ResourceExhausted, "larger than max")
	// Under it but over the value size: the node's own validation.
	_, err = kv.Put(ctx, &pb.PutRequest{Key: []byte("big"), Value: make([]byte, 2<<20)})
	wantRefused(t, err, codes.InvalidArgument, "value is 2097152 bytes; the limit is 1048576")
	wantAbsent(t, ctx, kv, []byte("big"))

	// The largest value still goes through.
	if _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("big"), Value: make([]byte, 1<<20)}); err != nil {
		t.Fatalf("put of the largest value: %v", err)
	}
}

func TestRequestSizeMustFitTheOtherLimits(t *testing.T) {
	_, err := node.New(node.Config{
		NodeID: 1, DataDir: t.TempDir(), ListenAddr: "127.0.0.1:0",
		Limits: node.Limits{MaxRequestSize: 2 << 20},
	})
	if err == nil || !strings.Contains(err.Error(), "max request size 2097152 bytes is too small") {
		t.Fatalf("New with a 2 MiB request size and 4 MiB transactions: %v", err)
	}
}

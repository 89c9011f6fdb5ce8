package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/raftrix/raftrixdb/internal/testcluster"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// keyInRange returns a key that the even bootstrap split puts in range i of n
// (0-based).
func keyInRange(i, n int, suffix string) []byte {
	v := uint32(i) * (1 << 16) / uint32(n)
	return append([]byte{byte(v >> 8), byte(v)}, []byte(suffix)...)
}

func TestWritesToEveryRangeReadableFromEveryNode(t *testing.T) {
	const ranges = 16
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, InitialRanges: ranges})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.WaitLeaders(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < ranges; i++ {
		key := keyInRange(i, ranges, "k")
		// Write through a node chosen round-robin, so most writes are forwarded.
		if _, err := c.KV(uint64(i%3+1)).Put(ctx, &pb.PutRequest{Key: key, Value: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatalf("put range %d: %v", i, err)
		}
	}
	for id := uint64(1); id <= 3; id++ {
		for i := 0; i < ranges; i++ {
			key := keyInRange(i, ranges, "k")
			resp, err := c.KV(id).Get(ctx, &pb.GetRequest{Key: key})
			if err != nil {
				t.Fatalf("get range %d from node %d: %v", i, id, err)
			}
			if !resp.Found || string(resp.Kv.Value) != fmt.Sprint(i) {
				t.Fatalf("get range %d from node %d: got %v", i, id, resp)
			}
			if resp.Header.RangeId != uint64(i+1) {
				t.Fatalf("key of range %d served by range %d", i+1, resp.Header.RangeId)
			}
		}
	}
}

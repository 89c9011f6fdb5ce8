package node_test

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"testing"

	"github.com/raftrix/raftrixdb/internal/testcluster"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// benchKey spreads keys over the evenly split ranges by their first two
// bytes. Those never start 0xFF 0xFF, which is reserved for the system range
// (one index in 65536 would; it takes 0xFFFE instead, still unique by i).
func benchKey(i uint64) []byte {
	k := make([]byte, 10)
	binary.BigEndian.PutUint16(k, min(uint16(i*40503), 0xFFFE))
	binary.BigEndian.PutUint64(k[2:], i)
	return k
}

// BenchmarkPut measures replicated puts (256-byte values) on an in-process
// 3-node cluster with 64 ranges on real disk: one client sends to node 1,
// 256 clients to the three nodes in turn (each forwards the two thirds of
// its puts whose range it does not lead). The sub-benchmarks are the client
// counts: 1 for latency, 256 for throughput.
//
//	go test ./node/ -run XXX -bench BenchmarkPut -benchtime 5s
func BenchmarkPut(b *testing.B) {
	for _, clients := range []int{1, 256} {
		b.Run(map[int]string{1: "clients=1", 256: "clients=256"}[clients], func(b *testing.B) {
			c := testcluster.Start(b, testcluster.Options{Nodes: 3, InitialRanges: 64, TickInterval: 100_000_000})
			ctx := context.Background()
			if _, err := c.WaitLeaders(ctx); err != nil {
				b.Fatal(err)
			}
			value := make([]byte, 256)
			var next atomic.Uint64
			b.SetParallelism((clients + 1) / 2) // GOMAXPROCS is 2 here
			b.ResetTimer()
			if clients == 1 {
				kv := c.KV(1)
				for i := 0; i < b.N; i++ {
					if _, err := kv.Put(ctx, &pb.PutRequest{Key: benchKey(next.Add(1)), Value: value}); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			b.RunParallel(func(pb_ *testing.PB) {
				for pb_.Next() {
					id := next.Add(1)
					if _, err := c.KV(id%3+1).Put(ctx, &pb.PutRequest{Key: benchKey(id), Value: value}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

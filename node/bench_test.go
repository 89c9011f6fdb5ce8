package node_test

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"testing"

	"github.com/raftrix/raftrixdb/internal/testcluster"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// benchKey spreads keys over the evenly split ranges by their first two bytes.
func benchKey(i uint64) []byte {
	k := make([]byte, 10)
	binary.BigEndian.PutUint16(k, uint16(i*40503))
	binary.BigEndian.PutUint64(k[2:], i)
	return k
}

// BenchmarkPut measures replicated puts (256-byte values) on an in-process
// 3-node cluster with 64 ranges on real disk, sent to node 1 (which forwards
// two thirds of them). Run with -cpu to vary nothing; use -clients via the
// sub-benchmarks: 1 client for latency, 256 for throughput.
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

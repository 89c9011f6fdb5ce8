package nemesis

import (
	"context"
	"testing"
	"time"

	"github.com/raftrix/raftrixdb/internal/faultcluster"
)

// TestProgressAfterLongPartition leaves the cluster without a quorum for
// 30s (node 3 down, nodes 1 and 2 partitioned), heals, and requires every
// range to accept a write within the recovery bound.
//
// It fails today: the peers' gRPC connections sit in gRPC's default
// reconnect backoff (1s, x1.6 per failure, up to 120s), so after 30s of
// refused dials the first reconnect comes 10-20s after the heal; after 45s
// of partition, ~31s. Measured: 5s -> 4.8s, 20s -> 8.6s, 45s -> 31.3s.
func TestProgressAfterLongPartition(t *testing.T) {
	t.Skip("bug: node/transport.go conn() uses gRPC's default reconnect backoff (max 120s): ranges stay unavailable 10-30s after a 30-45s partition heals; fix: grpc.WithConnectParams with MaxDelay ~1s")
	c, err := faultcluster.Start(faultcluster.Options{Nodes: 3, InitialRanges: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.WaitLeaders(ctx); err != nil {
		t.Fatal(err)
	}
	c.Kill(3)
	c.Network().Partition([]uint64{1}, []uint64{2})
	time.Sleep(30 * time.Second)
	c.Network().Heal()
	cfg := Config{Ranges: 8, OpTimeout: time.Second, RecoveryBound: 10 * time.Second}
	took, err := probeEveryRange(context.Background(), c, cfg, []uint64{1, 2})
	if err != nil {
		t.Fatalf("after a 30s partition without quorum: %v", err)
	}
	t.Logf("every range writable %v after the heal", took.Round(time.Millisecond))
}

package bench

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"

	"github.com/raftrix/raftrixdb/internal/testcluster"
)

// TestTxnKeysLandInTheRangesAsked asks a real cluster which range serves
// each key of the txn workload's transactions: a transaction of
// --ranges-per-txn N touches exactly N ranges.
func TestTxnKeysLandInTheRangesAsked(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	const ranges = 16
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, InitialRanges: ranges})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.WaitLeaders(ctx); err != nil {
		t.Fatal(err)
	}
	kv := c.KV(1)
	l := rangeLayout{ranges: ranges}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 2, 4} {
		for draw := 0; draw < 10; draw++ {
			served := map[uint64]bool{}
			for _, i := range l.pickTxnKeys(nil, rng, 4, n, 1000) {
				resp, err := kv.Get(ctx, &pb.GetRequest{Key: appendTaggedKey(nil, l.prefix(i), txnKeyTag, i, 16)})
				if err != nil {
					t.Fatal(err)
				}
				served[resp.GetHeader().GetRangeId()] = true
			}
			if len(served) != n {
				t.Fatalf("a transaction over %d ranges touched ranges %v", n, served)
			}
		}
	}
	// The bench's own check agrees with the cluster.
	d, err := OpenDriver(DriverRaftrix, DriverConfig{Endpoints: []string{c.Addr(1)}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, r := range []int{ranges, 64} {
		var warn strings.Builder
		warnRangeLayout(ctx, d, Spec{Ranges: r}, &warn)
		if got := warn.String() != ""; got != (r != ranges) {
			t.Errorf("--ranges %d on a cluster of %d: warning %q", r, ranges, warn.String())
		}
	}
}

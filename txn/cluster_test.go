package txn_test

import (
	"context"
	"testing"
	"time"

	"github.com/raftrix/raftrixdb/internal/testcluster"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// cluster is a test cluster that bootstrapped ranges even ranges, which the
// key helpers below address.
type cluster struct {
	*testcluster.Cluster
	ranges int
}

// startCluster starts nodes nodes bootstrapping ranges even ranges with
// TxnExpiry expiry (short, so that recovery from a dead coordinator happens
// within a test's patience) and waits for every range to have a leader.
func startCluster(t testing.TB, nodes, ranges int, expiry time.Duration) *cluster {
	t.Helper()
	c := &cluster{
		Cluster: testcluster.Start(t, testcluster.Options{
			Nodes:         nodes,
			InitialRanges: ranges,
			TxnExpiry:     expiry,
			// The node's default: placement plays no part here.
			HeartbeatInterval: time.Second,
		}),
		ranges: ranges,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := c.waitLeaders(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitLeaders waits until every range, the system range included, has a
// running leader that every running node agrees on; it returns range ID →
// leader node ID.
func (c *cluster) waitLeaders(ctx context.Context) (map[uint64]uint64, error) {
	return c.WaitRangeLeaders(ctx, c.ranges+1)
}

// keyInRange returns a key that the even bootstrap split puts in range i of
// n (0-based; range ID i+1).
func keyInRange(i, n int, suffix string) []byte {
	v := uint32(i) * (1 << 16) / uint32(n)
	return append([]byte{byte(v >> 8), byte(v)}, []byte(suffix)...)
}

func putOp(k []byte, v string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_Put{Put: &pb.PutRequest{Key: k, Value: []byte(v)}}}
}

func getOp(k []byte) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_Get{Get: &pb.GetRequest{Key: k}}}
}

func valueIs(k []byte, v string) *pb.Compare {
	return &pb.Compare{Key: k, Target: pb.Compare_VALUE, Result: pb.Compare_EQUAL, Value: []byte(v)}
}

// rangeIndexOf returns the 0-based index of the range of n that holds key
// after the even bootstrap split.
func rangeIndexOf(key []byte, n int) int {
	var v uint32
	if len(key) > 0 {
		v = uint32(key[0]) << 8
	}
	if len(key) > 1 {
		v |= uint32(key[1])
	}
	i := 0
	for j := 1; j < n; j++ {
		if uint32(j)*(1<<16)/uint32(n) <= v {
			i = j
		}
	}
	return i
}

// rangeSpan returns the span of range i of n after the even bootstrap
// split; an empty end is the end of the key space.
func rangeSpan(i, n int) (start, end []byte) {
	start = keyInRange(i, n, "")
	if i == 0 {
		start = nil
	}
	if i+1 < n {
		end = keyInRange(i+1, n, "")
	}
	return start, end
}

// leaderOfKey returns the node leading the range that holds key.
func (c *cluster) leaderOfKey(ctx context.Context, key []byte) (uint64, error) {
	leaders, err := c.waitLeaders(ctx)
	if err != nil {
		return 0, err
	}
	return leaders[uint64(rangeIndexOf(key, c.ranges)+1)], nil
}

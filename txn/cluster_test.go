package txn_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/raftrix/raftrixdb/node"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// cluster is a small in-process cluster like internal/testcluster, but with
// a short transaction expiry, so that recovery from a dead coordinator
// happens within a test's patience.
type cluster struct {
	t      testing.TB
	ranges int
	peers  map[uint64]string

	mu    sync.Mutex
	nodes map[uint64]*node.Node
	conns map[uint64]*grpc.ClientConn
}

// startCluster starts nodes nodes bootstrapping ranges even ranges with
// TxnExpiry expiry, waits for every range to have a leader, and stops
// everything in t.Cleanup.
func startCluster(t testing.TB, nodes, ranges int, expiry time.Duration) *cluster {
	t.Helper()
	c := &cluster{t: t, ranges: ranges, peers: map[uint64]string{}, nodes: map[uint64]*node.Node{}, conns: map[uint64]*grpc.ClientConn{}}
	dir := t.TempDir()
	listeners := map[uint64]net.Listener{}
	for id := uint64(1); id <= uint64(nodes); id++ {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listeners[id] = lis
		c.peers[id] = lis.Addr().String()
	}
	t.Cleanup(c.stopAll)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	for id, lis := range listeners {
		n, err := node.New(node.Config{
			NodeID:        id,
			DataDir:       filepath.Join(dir, fmt.Sprintf("n%d", id)),
			Listener:      lis,
			Peers:         c.peers,
			InitialRanges: ranges,
			TickInterval:  20 * time.Millisecond,
			TxnExpiry:     expiry,
			Logger:        logger,
			Registry:      prometheus.NewRegistry(),
		})
		if err != nil {
			t.Fatalf("start node %d: %v", id, err)
		}
		c.mu.Lock()
		c.nodes[id] = n
		c.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := c.waitLeaders(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// node returns a running node, or nil.
func (c *cluster) node(id uint64) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

// running returns the IDs of the running nodes.
func (c *cluster) running() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []uint64
	for id := uint64(1); id <= uint64(len(c.peers)); id++ {
		if c.nodes[id] != nil {
			ids = append(ids, id)
		}
	}
	return ids
}

// stop stops one node.
func (c *cluster) stop(id uint64) {
	c.mu.Lock()
	n := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	if n != nil {
		n.Stop()
	}
}

func (c *cluster) stopAll() {
	for id := range c.peers {
		c.stop(id)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, cc := range c.conns {
		cc.Close()
		delete(c.conns, id)
	}
}

func (c *cluster) conn(id uint64) *grpc.ClientConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.conns[id]; ok {
		return cc
	}
	cc, err := grpc.NewClient(c.peers[id], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	c.conns[id] = cc
	return cc
}

// kv is a KV client of node id.
func (c *cluster) kv(id uint64) pb.KVClient { return pb.NewKVClient(c.conn(id)) }

// waitLeaders waits until every range has a running leader that every
// running node agrees on; it returns range ID → leader node ID.
func (c *cluster) waitLeaders(ctx context.Context) (map[uint64]uint64, error) {
	for {
		leaders, ok := c.leaders(ctx)
		if ok {
			return leaders, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("ranges without an agreed leader: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *cluster) leaders(ctx context.Context) (map[uint64]uint64, bool) {
	leaders := map[uint64]uint64{}
	for _, id := range c.running() {
		resp, err := pb.NewAdminClient(c.conn(id)).ListRanges(ctx, &pb.ListRangesRequest{})
		if err != nil {
			return nil, false
		}
		for _, ri := range resp.Ranges {
			l := ri.LeaderNodeId
			if l == 0 || c.node(l) == nil {
				return nil, false
			}
			if prev, ok := leaders[ri.Descriptor_.RangeId]; ok && prev != l {
				return nil, false
			}
			leaders[ri.Descriptor_.RangeId] = l
		}
	}
	return leaders, len(leaders) == c.ranges+1 // and the system range
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

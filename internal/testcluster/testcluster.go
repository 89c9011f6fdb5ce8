// Package testcluster starts several nodes in one process on loopback, for
// tests. Nodes can be stopped and restarted on the same data directory and
// address.
package testcluster

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/raftrix/raftrixdb/node"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Options configure a test cluster.
type Options struct {
	Nodes         int
	InitialRanges int
	// TickInterval defaults to 20ms to keep elections in tests short.
	TickInterval         time.Duration
	LogTruncateThreshold uint64
	// HeartbeatInterval and DeadTimeout tune placement (defaults: 100ms and
	// 5m; tests of repair shorten the latter).
	HeartbeatInterval time.Duration
	DeadTimeout       time.Duration
	// ManualPlacement stops placement from moving anything (for tests that
	// move replicas by hand).
	ManualPlacement bool
	// TxnExpiry is how long a transaction record may go without a heartbeat
	// (default 1s here, so tests that kill a coordinator do not wait 5s).
	TxnExpiry time.Duration
}

// Cluster is a set of in-process nodes.
type Cluster struct {
	t     testing.TB
	opts  Options
	dir   string
	peers map[uint64]string

	mu    sync.Mutex
	nodes map[uint64]*node.Node
	regs  map[uint64]*prometheus.Registry
	// joinAddr is the address a joined node joined through.
	joinAddr map[uint64]string
	conns    map[uint64]*grpc.ClientConn
}

// Start starts a cluster and registers its shutdown with t.Cleanup.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.TickInterval == 0 {
		opts.TickInterval = 20 * time.Millisecond
	}
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = 100 * time.Millisecond
	}
	if opts.TxnExpiry == 0 {
		opts.TxnExpiry = time.Second
	}
	c := &Cluster{
		t: t, opts: opts, dir: t.TempDir(),
		peers:    map[uint64]string{},
		nodes:    map[uint64]*node.Node{},
		regs:     map[uint64]*prometheus.Registry{},
		joinAddr: map[uint64]string{},
		conns:    map[uint64]*grpc.ClientConn{},
	}
	// Registered first, so that nodes started before one that fails to start
	// are stopped too.
	t.Cleanup(c.StopAll)
	listeners := map[uint64]net.Listener{}
	for i := 1; i <= opts.Nodes; i++ {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listeners[uint64(i)] = lis
		c.peers[uint64(i)] = lis.Addr().String()
	}
	for id, lis := range listeners {
		c.startNode(id, lis, "")
	}
	return c
}

func (c *Cluster) startNode(id uint64, lis net.Listener, joinAddr string) {
	c.t.Helper()
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := node.New(node.Config{
		NodeID:               id,
		DataDir:              c.DataDir(id),
		Listener:             lis,
		Peers:                c.Peers(),
		JoinAddr:             joinAddr,
		HeartbeatInterval:    c.opts.HeartbeatInterval,
		DeadTimeout:          c.opts.DeadTimeout,
		ManualPlacement:      c.opts.ManualPlacement,
		TxnExpiry:            c.opts.TxnExpiry,
		InitialRanges:        c.opts.InitialRanges,
		TickInterval:         c.opts.TickInterval,
		LogTruncateThreshold: c.opts.LogTruncateThreshold,
		Logger:               logger,
		Registry:             reg,
	})
	if err != nil {
		c.t.Fatalf("start node %d: %v", id, err)
	}
	c.mu.Lock()
	c.nodes[id] = n
	c.regs[id] = reg
	c.mu.Unlock()
}

// DataDir is where node id keeps its engine.
func (c *Cluster) DataDir(id uint64) string {
	return filepath.Join(c.dir, fmt.Sprintf("n%d", id))
}

// Stop stops one node; its data stays for Restart.
func (c *Cluster) Stop(id uint64) {
	c.mu.Lock()
	n := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	if n != nil {
		n.Stop()
	}
}

// Restart starts a stopped node again on its data and address.
func (c *Cluster) Restart(id uint64) {
	c.t.Helper()
	var lis net.Listener
	var err error
	// The old listener's port may linger briefly after Stop.
	for i := 0; i < 50; i++ {
		if lis, err = net.Listen("tcp", c.Addr(id)); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("relisten node %d on %s: %v", id, c.Addr(id), err)
	}
	c.mu.Lock()
	joinAddr := c.joinAddr[id]
	c.mu.Unlock()
	c.startNode(id, lis, joinAddr)
}

// Join starts a new node that joins the cluster through the running node
// with the lowest ID (placement gives it its ID) and returns its ID.
func (c *Cluster) Join(ctx context.Context) uint64 {
	c.t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	var joinAddr string
	var lowest uint64
	c.mu.Lock()
	for id := range c.nodes {
		if lowest == 0 || id < lowest {
			lowest, joinAddr = id, c.peers[id]
		}
	}
	c.mu.Unlock()
	id, peers, err := node.JoinCluster(ctx, joinAddr, lis.Addr().String(), nil)
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	for pid, addr := range peers {
		c.peers[pid] = addr
	}
	c.joinAddr[id] = joinAddr
	c.mu.Unlock()
	c.startNode(id, lis, joinAddr)
	return id
}

// StopAll stops every running node.
func (c *Cluster) StopAll() {
	for _, id := range c.Running() {
		c.Stop(id)
	}
	c.mu.Lock()
	for id, conn := range c.conns {
		conn.Close()
		delete(c.conns, id)
	}
	c.mu.Unlock()
}

// Running returns the IDs of the running nodes, lowest first.
func (c *Cluster) Running() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.nodes))
}

// Node returns a running node, or nil.
func (c *Cluster) Node(id uint64) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

// Metric returns the value of a counter or gauge of node id (as started
// last), or 0 if it is not registered.
func (c *Cluster) Metric(id uint64, name string) float64 {
	c.mu.Lock()
	reg := c.regs[id]
	c.mu.Unlock()
	mfs, err := reg.Gather()
	if err != nil {
		c.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
		return sum
	}
	return 0
}

// Addr returns a node's address.
func (c *Cluster) Addr(id uint64) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peers[id]
}

// Peers returns every node's address by ID.
func (c *Cluster) Peers() map[uint64]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.peers)
}

func (c *Cluster) conn(id uint64) *grpc.ClientConn {
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

// Conn returns the test's client connection to node id.
func (c *Cluster) Conn(id uint64) *grpc.ClientConn { return c.conn(id) }

// KV returns a KV client talking to node id.
func (c *Cluster) KV(id uint64) pb.KVClient { return pb.NewKVClient(c.conn(id)) }

// Admin returns an Admin client talking to node id.
func (c *Cluster) Admin(id uint64) pb.AdminClient { return pb.NewAdminClient(c.conn(id)) }

// WaitLeaders waits until every range has a leader that all running nodes
// agree on, and returns range ID -> leader node ID.
func (c *Cluster) WaitLeaders(ctx context.Context) (map[uint64]uint64, error) {
	return c.WaitRangeLeaders(ctx, 0)
}

// WaitRangeLeaders is WaitLeaders for a cluster known to have n ranges, the
// system range included: it also waits until the running nodes report
// exactly n ranges, so that it does not return while a node does not list
// some range yet. n = 0 accepts any number of ranges.
func (c *Cluster) WaitRangeLeaders(ctx context.Context, n int) (map[uint64]uint64, error) {
	for {
		leaders, ok := c.leaders(ctx)
		if ok && (n == 0 || len(leaders) == n) {
			return leaders, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("ranges without an agreed leader: %v", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *Cluster) leaders(ctx context.Context) (map[uint64]uint64, bool) {
	leaders := map[uint64]uint64{}
	for _, id := range c.Running() {
		resp, err := c.Admin(id).ListRanges(ctx, &pb.ListRangesRequest{})
		if err != nil {
			return nil, false
		}
		for _, ri := range resp.Ranges {
			l := ri.LeaderNodeId
			if l == 0 || c.Node(l) == nil {
				return nil, false
			}
			if prev, ok := leaders[ri.Descriptor_.RangeId]; ok && prev != l {
				return nil, false
			}
			leaders[ri.Descriptor_.RangeId] = l
		}
	}
	return leaders, len(leaders) > 0
}

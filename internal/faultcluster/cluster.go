// Package faultcluster runs several RaftrixDB nodes in one process under
// injected faults: every node keeps its Pebble engine on its own crashable
// in-memory filesystem, and every connection between nodes goes through a
// Network that can partition, cut, delay and drop them.
//
// Clients (tests) talk to the nodes directly over gRPC on loopback, not
// through the Network, like a client in the same datacenter.
//
//	c, err := faultcluster.Start(faultcluster.Options{Nodes: 3, InitialRanges: 8})
//	defer c.Close()
//	c.Network().Partition([]uint64{1}, []uint64{2, 3})
//	c.Crash(2)      // loses every write node 2 had not synced
//	c.Restart(2)
//	c.Network().Heal()
package faultcluster

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/raftrix/raftrixdb/node"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Options configure a cluster. Zero values pick the defaults noted.
type Options struct {
	Nodes         int // default 3
	InitialRanges int // default 1
	// TickInterval defaults to 20ms; an election takes ElectionTicks (default
	// 10) ticks.
	TickInterval         time.Duration
	ElectionTicks        int
	LogTruncateThreshold uint64
	// HeartbeatInterval is how often nodes report to placement (default
	// 1s); ManualPlacement turns placement's own decisions off.
	HeartbeatInterval time.Duration
	ManualPlacement   bool
	// Logger receives the nodes' logs; nil discards them.
	Logger *slog.Logger
	// Knobs, if set, gives each node its testing knobs.
	Knobs func(nodeID uint64) node.TestingKnobs
}

// dataDir is where each node's engine lives on its own filesystem.
const dataDir = "/data"

// Cluster is a set of in-process nodes connected through a Network.
type Cluster struct {
	opts  Options
	nw    *Network
	peers map[uint64]string
	ids   []uint64
	nodes map[uint64]*member

	// mu guards the client connections and the retired counters.
	mu    sync.Mutex
	conns map[uint64]*grpc.ClientConn
	// retired sums the counters of node incarnations that have stopped.
	retired map[string]float64
}

// member is one node slot: its address, its filesystem and the running node.
type member struct {
	id   uint64
	addr string
	// mu is held shared by callers using n and exclusively while the node is
	// started or stopped, so no caller touches a node whose engine is closed.
	mu  sync.RWMutex
	fs  *vfs.MemFS
	n   *node.Node // nil while stopped
	reg *prometheus.Registry
}

// Start starts a cluster. Close stops it.
func Start(opts Options) (*Cluster, error) {
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.InitialRanges == 0 {
		opts.InitialRanges = 1
	}
	if opts.TickInterval == 0 {
		opts.TickInterval = 20 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{
		opts:    opts,
		nw:      NewNetwork(),
		peers:   map[uint64]string{},
		nodes:   map[uint64]*member{},
		conns:   map[uint64]*grpc.ClientConn{},
		retired: map[string]float64{},
	}
	listeners := map[uint64]net.Listener{}
	host := loopbackHost()
	for i := 1; i <= opts.Nodes; i++ {
		id := uint64(i)
		lis, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return nil, err
		}
		listeners[id] = lis
		addr := lis.Addr().String()
		c.peers[id] = addr
		c.ids = append(c.ids, id)
		c.nodes[id] = &member{id: id, addr: addr, fs: vfs.NewCrashableMem()}
		c.nw.register(id, addr)
	}
	for i, id := range c.ids {
		m := c.nodes[id]
		m.mu.Lock()
		err := c.startLocked(m, listeners[id])
		m.mu.Unlock()
		if err != nil {
			for _, rest := range c.ids[i+1:] {
				listeners[rest].Close()
			}
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *Cluster) startLocked(m *member, lis net.Listener) (err error) {
	defer func() {
		// A node that panics while opening (say, Raft refusing its
		// recovered state) is a finding to report, not a reason to lose
		// the whole test binary.
		if p := recover(); p != nil {
			lis.Close()
			err = fmt.Errorf("start node %d: panic: %v", m.id, p)
		}
	}()
	reg := prometheus.NewRegistry()
	var knobs node.TestingKnobs
	if c.opts.Knobs != nil {
		knobs = c.opts.Knobs(m.id)
	}
	n, err := node.New(node.Config{
		NodeID:               m.id,
		DataDir:              dataDir,
		FS:                   m.fs,
		Listener:             c.nw.wrapListener(m.id, lis),
		Peers:                c.peers,
		Dialer:               c.nw.Dialer(m.id),
		Knobs:                knobs,
		InitialRanges:        c.opts.InitialRanges,
		TickInterval:         c.opts.TickInterval,
		ElectionTicks:        c.opts.ElectionTicks,
		LogTruncateThreshold: c.opts.LogTruncateThreshold,
		HeartbeatInterval:    c.opts.HeartbeatInterval,
		ManualPlacement:      c.opts.ManualPlacement,
		Logger:               c.opts.Logger,
		Registry:             reg,
	})
	if err != nil {
		lis.Close()
		return fmt.Errorf("start node %d: %w", m.id, err)
	}
	m.n, m.reg = n, reg
	return nil
}

// stopLocked stops m's node and keeps its counters.
func (c *Cluster) stopLocked(m *member) {
	m.n.Stop()
	m.n = nil
	counters := gatherCounters(m.reg)
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, v := range counters {
		c.retired[name] += v
	}
}

func gatherCounters(reg *prometheus.Registry) map[string]float64 {
	out := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if ctr := m.GetCounter(); ctr != nil {
				out[mf.GetName()] += ctr.GetValue()
			}
		}
	}
	return out
}

// Counter returns the sum of a counter over every node and every
// incarnation of a node since the cluster started.
func (c *Cluster) Counter(name string) float64 {
	var sum float64
	for _, id := range c.ids {
		m := c.nodes[id]
		m.mu.RLock()
		if m.n != nil {
			sum += gatherCounters(m.reg)[name]
		}
		m.mu.RUnlock()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return sum + c.retired[name]
}

// Close stops every node and closes the client connections.
func (c *Cluster) Close() {
	for _, id := range c.ids {
		c.Kill(id)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, cc := range c.conns {
		cc.Close()
		delete(c.conns, id)
	}
}

// Network returns the network between the nodes.
func (c *Cluster) Network() *Network { return c.nw }

// NodeIDs returns every node's ID, running or not, in increasing order.
func (c *Cluster) NodeIDs() []uint64 { return append([]uint64(nil), c.ids...) }

// Addr returns a node's address; it stays the same across restarts.
func (c *Cluster) Addr(id uint64) string { return c.peers[id] }

// Running reports whether node id is running.
func (c *Cluster) Running(id uint64) bool {
	m := c.nodes[id]
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.n != nil
}

// WithNode calls fn with node id if it is running, and reports whether it
// was. The node is not stopped while fn runs.
func (c *Cluster) WithNode(id uint64, fn func(*node.Node)) bool {
	m := c.nodes[id]
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.n == nil {
		return false
	}
	fn(m.n)
	return true
}

// Kill stops node id (a clean stop: its filesystem keeps everything it
// wrote, synced or not, as after a process crash on a healthy machine).
// Killing a stopped node does nothing.
func (c *Cluster) Kill(id uint64) {
	m := c.nodes[id]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n != nil {
		c.stopLocked(m)
	}
}

// Crash simulates a power loss on node id: the node's filesystem loses every
// write that was not synced, and the node stops. Nothing the node does after
// the instant of the crash reaches anyone: all its connections are cut
// before the filesystem is cloned, so no message or answer can reflect state
// the clone lacks.
func (c *Cluster) Crash(id uint64) {
	m := c.nodes[id]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == nil {
		return
	}
	c.nw.freeze(id)
	crashed := m.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	c.stopLocked(m)
	m.fs = crashed
	// Stays frozen until Restart: a stopped node has no connections anyway.
}

// Restart starts a stopped node again on its filesystem and address.
// Restarting a running node does nothing.
//
// A node listens again on its old address. Clusters run side by side (the
// nemesis runs several histories at once), so each cluster has its own
// loopback address (loopbackHost): on a shared 127.0.0.1, another cluster's
// new listener could take a stopped node's port, and this cluster's nodes
// would then talk to a node of another cluster.
func (c *Cluster) Restart(id uint64) error {
	m := c.nodes[id]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n != nil {
		return nil
	}
	// The old listener's port may linger briefly after Stop.
	var lis net.Listener
	var err error
	for i := 0; i < 100; i++ {
		if lis, err = net.Listen("tcp", m.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("relisten node %d on %s: %w", id, m.addr, err)
	}
	c.nw.unfreeze(id)
	return c.startLocked(m, lis)
}

// clientConnectParams make a client notice a restarted node quickly; gRPC's
// default reconnect backoff grows to two minutes.
var clientConnectParams = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 300 * time.Millisecond},
	MinConnectTimeout: time.Second,
}

func (c *Cluster) conn(id uint64) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.conns[id]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(c.peers[id],
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(clientConnectParams))
	if err != nil {
		return nil, err
	}
	c.conns[id] = cc
	return cc, nil
}

// KV returns a KV client talking to node id directly (not through the
// Network).
func (c *Cluster) KV(id uint64) pb.KVClient {
	cc, err := c.conn(id)
	if err != nil {
		panic(err) // grpc.NewClient fails only on a malformed target
	}
	return pb.NewKVClient(cc)
}

// Admin returns an Admin client talking to node id directly.
func (c *Cluster) Admin(id uint64) pb.AdminClient {
	cc, err := c.conn(id)
	if err != nil {
		panic(err)
	}
	return pb.NewAdminClient(cc)
}

// WaitLeaders waits until every range has a leader that all running nodes
// agree on, and returns range ID -> leader node ID.
func (c *Cluster) WaitLeaders(ctx context.Context) (map[uint64]uint64, error) {
	for {
		if leaders, ok := c.leaders(ctx); ok {
			return leaders, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("ranges without an agreed leader: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *Cluster) leaders(ctx context.Context) (map[uint64]uint64, bool) {
	leaders := map[uint64]uint64{}
	for _, id := range c.ids {
		if !c.Running(id) {
			continue
		}
		resp, err := c.Admin(id).ListRanges(ctx, &pb.ListRangesRequest{})
		if err != nil {
			return nil, false
		}
		for _, ri := range resp.Ranges {
			l := ri.LeaderNodeId
			if l == 0 || !c.Running(l) {
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

// RangeIDs returns the IDs of the ranges the running nodes hold.
func (c *Cluster) RangeIDs() []uint64 {
	seen := map[uint64]bool{}
	for _, id := range c.ids {
		c.WithNode(id, func(n *node.Node) {
			for _, d := range n.RangeDescriptors() {
				seen[d.RangeId] = true
			}
		})
	}
	out := make([]uint64, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// loopbackHost picks a random address in 127.0.0.0/8 (Linux answers on all
// of it) for one cluster's listeners.
func loopbackHost() string {
	return fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(254), rand.IntN(256), 1+rand.IntN(254))
}

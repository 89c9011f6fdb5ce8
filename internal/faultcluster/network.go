package faultcluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"sync"
	"syscall"
	"time"
)

// Network sits between the nodes of a Cluster: every peer connection is
// dialed through Dialer and every accepted connection passes through a
// wrapped listener, so the network can refuse, cut, delay and drop them.
//
// Faults act on connections, not on single messages: the nodes talk gRPC
// over TCP, so a "lost message" is a cut connection (the Raft transport drops
// what it had queued and Raft retransmits), and a partition refuses new dials
// and cuts existing connections. Duplicated messages are not injected: TCP
// never delivers them, and the retransmissions that follow a cut are the
// duplicates Raft has to handle anyway.
type Network struct {
	mu struct {
		sync.Mutex
		addrs   map[string]uint64        // listen address -> node ID
		blocked map[[2]uint64]bool       // {from, to}: from's dials to to are refused
		frozen  map[uint64]bool          // node whose every connection is cut
		conns   map[*conn]struct{}       // live connections
		delay   map[uint64]time.Duration // max added delay on writes by a node (0: all nodes)
		flaky   float64                  // probability that a peer write cuts its connection
		rng     *rand.Rand
		cuts    int
	}
}

// NewNetwork returns a network with no faults.
func NewNetwork() *Network {
	nw := &Network{}
	nw.mu.addrs = map[string]uint64{}
	nw.mu.blocked = map[[2]uint64]bool{}
	nw.mu.frozen = map[uint64]bool{}
	nw.mu.conns = map[*conn]struct{}{}
	nw.mu.delay = map[uint64]time.Duration{}
	nw.mu.rng = rand.New(rand.NewPCG(1, 2))
	return nw
}

// errRefused is what a dial blocked by a partition returns, like a host that
// refuses connections (faster than a timeout, and the same for the node).
var errRefused = &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}

// errCut is returned by writes on a connection the network has cut.
var errCut = errors.New("faultcluster: connection cut by the network")

func (nw *Network) register(id uint64, addr string) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.mu.addrs[addr] = id
}

// Dialer returns the dial function for node from's outgoing connections.
func (nw *Network) Dialer(from uint64) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		nw.mu.Lock()
		to, ok := nw.mu.addrs[addr]
		refuse := nw.refusedLocked(from, to)
		nw.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("faultcluster: node %d dials unknown address %s", from, addr)
		}
		if refuse {
			return nil, errRefused
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		wc, ok := nw.track(c, from, to, true)
		if !ok {
			return nil, errRefused // partitioned while dialing
		}
		return wc, nil
	}
}

func (nw *Network) refusedLocked(from, to uint64) bool {
	return nw.mu.frozen[from] || nw.mu.frozen[to] || nw.mu.blocked[[2]uint64{from, to}]
}

// track wraps a connection of owner (the dialing node, or the accepting node
// with peer 0) and registers it, unless the network refuses it now.
func (nw *Network) track(c net.Conn, owner, peer uint64, dialed bool) (*conn, bool) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if nw.mu.frozen[owner] || (dialed && nw.refusedLocked(owner, peer)) {
		c.Close()
		return nil, false
	}
	wc := &conn{Conn: c, nw: nw, owner: owner, peer: peer, dialed: dialed}
	nw.mu.conns[wc] = struct{}{}
	return wc, true
}

// wrapListener makes node id's accepted connections part of the network.
func (nw *Network) wrapListener(id uint64, lis net.Listener) net.Listener {
	return &listener{Listener: lis, nw: nw, id: id}
}

// Partition splits the nodes into groups that cannot reach each other; a node
// in no group is isolated. It replaces any earlier partition or one-way
// block, and cuts the connections that cross group boundaries.
func (nw *Network) Partition(groups ...[]uint64) {
	group := map[uint64]int{}
	for i, g := range groups {
		for _, id := range g {
			group[id] = i + 1
		}
	}
	nw.mu.Lock()
	nw.mu.blocked = map[[2]uint64]bool{}
	var ids []uint64
	for _, id := range nw.mu.addrs {
		ids = append(ids, id)
	}
	for _, a := range ids {
		for _, b := range ids {
			if a != b && (group[a] == 0 || group[a] != group[b]) {
				nw.mu.blocked[[2]uint64{a, b}] = true
			}
		}
	}
	nw.mu.Unlock()
	nw.cutBlocked()
}

// Block makes from unable to reach to (one way): from's dials to to are
// refused and from's existing connections to to are cut. to can still reach
// from over its own connections.
func (nw *Network) Block(from, to uint64) {
	nw.mu.Lock()
	nw.mu.blocked[[2]uint64{from, to}] = true
	nw.mu.Unlock()
	nw.cutBlocked()
}

// Heal removes every partition, block, delay and flakiness (not freezes,
// which belong to node crashes).
func (nw *Network) Heal() {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.mu.blocked = map[[2]uint64]bool{}
	nw.mu.delay = map[uint64]time.Duration{}
	nw.mu.flaky = 0
}

// SetDelay adds a random delay of up to max before every write node from
// makes on its peer connections (from 0: every node). Writes on one
// connection stay in order.
func (nw *Network) SetDelay(from uint64, max time.Duration) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.mu.delay[from] = max
}

// SetFlaky makes every write on a peer connection cut that connection with
// probability p: a lossy link, on which the Raft transport loses what it had
// queued and reconnects.
func (nw *Network) SetFlaky(p float64) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.mu.flaky = p
}

// CutRandom cuts one random peer connection and reports whether there was
// one.
func (nw *Network) CutRandom(rng *rand.Rand) bool {
	nw.mu.Lock()
	var peers []*conn
	for c := range nw.mu.conns {
		if c.dialed {
			peers = append(peers, c)
		}
	}
	nw.mu.Unlock()
	if len(peers) == 0 {
		return false
	}
	// Order by endpoints so the seed picks the same link when the set of
	// connections is the same.
	sort.Slice(peers, func(i, j int) bool {
		if peers[i].owner != peers[j].owner {
			return peers[i].owner < peers[j].owner
		}
		return peers[i].peer < peers[j].peer
	})
	peers[rng.IntN(len(peers))].cut()
	return true
}

// Cuts returns how many connections the network has cut.
func (nw *Network) Cuts() int {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return nw.mu.cuts
}

// freeze cuts every connection of node id, refuses new ones, and returns once
// no write of id is in progress: nothing id does afterwards can reach anyone.
func (nw *Network) freeze(id uint64) {
	nw.mu.Lock()
	nw.mu.frozen[id] = true
	var victims []*conn
	for c := range nw.mu.conns {
		if c.owner == id || (c.dialed && c.peer == id) {
			victims = append(victims, c)
		}
	}
	nw.mu.Unlock()
	for _, c := range victims {
		c.cut()
	}
}

func (nw *Network) unfreeze(id uint64) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	delete(nw.mu.frozen, id)
}

func (nw *Network) cutBlocked() {
	nw.mu.Lock()
	var victims []*conn
	for c := range nw.mu.conns {
		if c.dialed && nw.mu.blocked[[2]uint64{c.owner, c.peer}] {
			victims = append(victims, c)
		}
	}
	nw.mu.Unlock()
	for _, c := range victims {
		c.cut()
	}
}

// beforeWrite returns the delay to add to a write by c and whether the write
// should cut the connection instead.
func (nw *Network) beforeWrite(c *conn) (time.Duration, bool) {
	if !c.dialed {
		return 0, false
	}
	nw.mu.Lock()
	defer nw.mu.Unlock()
	max := nw.mu.delay[0]
	if d := nw.mu.delay[c.owner]; d > max {
		max = d
	}
	var d time.Duration
	if max > 0 {
		d = time.Duration(nw.mu.rng.Int64N(int64(max)))
	}
	return d, nw.mu.flaky > 0 && nw.mu.rng.Float64() < nw.mu.flaky
}

func (nw *Network) forget(c *conn, cut bool) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	delete(nw.mu.conns, c)
	if cut {
		nw.mu.cuts++
	}
}

// conn is one end of a TCP connection owned by a node.
type conn struct {
	net.Conn
	nw     *Network
	owner  uint64
	peer   uint64 // 0 for accepted connections: the peer may be a client
	dialed bool

	// mu is held shared for the duration of every write, so cut can wait
	// until no write is in flight.
	mu   sync.RWMutex
	dead bool
	once sync.Once
}

func (c *conn) Write(b []byte) (int, error) {
	delay, drop := c.nw.beforeWrite(c)
	if delay > 0 {
		time.Sleep(delay)
	}
	if drop {
		c.cut()
		return 0, errCut
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.dead {
		return 0, errCut
	}
	return c.Conn.Write(b)
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.nw.forget(c, false) })
	return err
}

// cut closes the connection and returns once no write is in flight on it.
func (c *conn) cut() {
	c.once.Do(func() { c.nw.forget(c, true) })
	c.Conn.Close() // unblocks a write stuck on a full socket buffer
	c.mu.Lock()
	c.dead = true
	c.mu.Unlock()
}

// listener accepts connections for node id through the network.
type listener struct {
	net.Listener
	nw *Network
	id uint64
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if wc, ok := l.nw.track(c, l.id, 0, false); ok {
			return wc, nil
		}
	}
}

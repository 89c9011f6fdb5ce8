package client

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Routing: a request for a key goes to the address of the leader of the
// key's range as the range cache knows it. On a cache miss the client asks
// placement (Lookup, through a seed endpoint); when the leader is unknown or
// unreachable the request goes to a seed, which forwards it. Every answer
// corrects the cache:
//
//   - a response header naming another node or range: the node that served
//     the request leads the range, or the key has moved to another range (a
//     split) and the entry is dropped;
//   - NOT_LEADER with a hint: the entry's leader becomes the hinted one and
//     the request is sent there at once;
//   - WRONG_RANGE, or a hint with a newer descriptor: the entry is replaced
//     or dropped, and the next attempt looks the key up again;
//   - NO_LEADER: the leader is forgotten and the request retried after a
//     backoff;
//   - a connection that does not come up: every entry led from that address
//     forgets its leader.

const (
	// connectTimeout bounds the wait for a connection to come up before a
	// request is sent on it.
	connectTimeout = 2 * time.Second
	// placementTimeout bounds a Lookup or ListNodes call: a request whose
	// lookup takes longer goes to a seed instead.
	placementTimeout = time.Second
	// lookupPause is how long lookups are skipped after one failed (placement
	// may be electing a leader); requests go to seeds meanwhile.
	lookupPause = 200 * time.Millisecond
	// lookupDisabledPause is how long lookups are skipped when the cluster
	// refuses them outright (not implemented, or not allowed to this client).
	lookupDisabledPause = time.Minute
	// nodesRefreshInterval limits how often ListNodes refreshes the node
	// address map.
	nodesRefreshInterval = 500 * time.Millisecond
	// failedAddrPause is how long a seed that could not be reached is passed
	// over when another seed is available.
	failedAddrPause = time.Second
	// maxImmediateRetries bounds retries without backoff in a row (following
	// hints, or skipping an unreachable address), so two nodes that each name
	// the other leader cannot make the client spin.
	maxImmediateRetries = 3
)

// errClosed is returned after Close.
var errClosed = errors.New("client: closed")

// target is where one attempt of a request goes.
type target struct {
	addr string
	// leaderID is the node expected to serve the request (0: a seed, which
	// forwards).
	leaderID uint64
	// cached is set when the target came from a cache entry; rangeID names
	// its range.
	cached  bool
	rangeID uint64
}

// conn returns the shared connection to addr, creating it (lazily
// connecting) on first use.
func (db *DB) conn(addr string) (*grpc.ClientConn, error) {
	db.mu.RLock()
	c, ok := db.mu.conns[addr]
	closed := db.mu.closed
	db.mu.RUnlock()
	switch {
	case closed:
		return nil, errClosed
	case ok:
		return c, nil
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.mu.closed {
		return nil, errClosed
	}
	if c, ok := db.mu.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), pb.DialCodec())
	if err != nil {
		return nil, err
	}
	db.mu.conns[addr] = c
	db.mu.batchers[addr] = newBatcher(pb.NewKVClient(c), &db.stats)
	return c, nil
}

// kv returns the KV API of the node at addr, whose connection conn() has
// made: Get, Put and Delete go through the node's batcher (batch.go).
func (db *DB) kv(addr string, conn *grpc.ClientConn) pb.KVClient {
	db.mu.RLock()
	b := db.mu.batchers[addr]
	db.mu.RUnlock()
	if b == nil { // closed meanwhile: the plain client fails as it should
		return pb.NewKVClient(conn)
	}
	return batchingKV{KVClient: pb.NewKVClient(conn), b: b}
}

// waitReady waits until conn is connected, so that a request is only sent
// on a connection that is up: a request never sent may be retried anywhere,
// writes included. A connection in transient failure is reported at once
// (and asked to reconnect without waiting out its backoff, for next time).
func waitReady(ctx context.Context, conn *grpc.ClientConn) bool {
	if conn.GetState() == connectivity.Ready {
		return true // the common case: no timer to set up
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	for {
		s := conn.GetState()
		switch s {
		case connectivity.Ready:
			return true
		case connectivity.Idle:
			conn.Connect()
		case connectivity.TransientFailure:
			conn.ResetConnectBackoff()
			return false
		case connectivity.Shutdown:
			return false
		}
		if !conn.WaitForStateChange(ctx, s) {
			return false
		}
	}
}

// markFailed remembers that addr could not be reached.
func (db *DB) markFailed(addr string) {
	db.mu.Lock()
	db.mu.failedAt[addr] = time.Now()
	db.mu.Unlock()
}

// leaderUnreachable forgets addr as the leader of every range, and as the
// address of its node: if the node came back elsewhere, the next answer that
// names it sends the client to ListNodes for the new address.
func (db *DB) leaderUnreachable(addr string) {
	db.markFailed(addr)
	db.cache.forgetAddr(addr)
	db.mu.Lock()
	for id, a := range db.mu.nodes {
		if a == addr {
			delete(db.mu.nodes, id)
		}
	}
	db.mu.Unlock()
}

// seed picks a seed endpoint, round robin, passing over those that failed
// recently while another one is available.
func (db *DB) seed() string {
	n := uint64(len(db.seeds))
	start := db.next.Add(1)
	now := time.Now()
	db.mu.RLock()
	defer db.mu.RUnlock()
	for i := uint64(0); i < n; i++ {
		addr := db.seeds[(start+i)%n]
		if t, ok := db.mu.failedAt[addr]; !ok || now.Sub(t) > failedAddrPause {
			return addr
		}
	}
	return db.seeds[start%n]
}

// route picks the target of the next attempt for key.
func (db *DB) route(ctx context.Context, key []byte) target {
	e, ok := db.cache.get(key)
	if !ok {
		e, ok = db.lookup(ctx, key)
	}
	if ok && e.leaderAddr == "" && e.leaderID != 0 {
		// The leader is known but its address was not: it may be by now.
		if e.leaderAddr = db.nodeAddr(e.leaderID); e.leaderAddr != "" {
			db.cache.setLeader(key, e.desc.RangeId, e.leaderID, e.leaderAddr)
		}
	}
	switch {
	case !ok:
		return target{addr: db.seed()}
	case e.leaderAddr == "":
		return target{addr: db.seed(), cached: true, rangeID: e.desc.RangeId}
	default:
		return target{addr: e.leaderAddr, leaderID: e.leaderID, cached: true, rangeID: e.desc.RangeId}
	}
}

// lookup asks placement for the range holding key and caches the answer.
func (db *DB) lookup(ctx context.Context, key []byte) (rangeEntry, bool) {
	if time.Now().UnixNano() < db.lookupPausedUntil.Load() {
		return rangeEntry{}, false
	}
	if db.nodesRefreshedAt.Load() == 0 {
		// First use: learn every node's address, so that answers and hints
		// naming any node can be followed directly.
		db.resolveLater()
	}
	addr := db.seed()
	conn, err := db.conn(addr)
	if err != nil {
		return rangeEntry{}, false
	}
	if !waitReady(ctx, conn) {
		db.markFailed(addr)
		return rangeEntry{}, false
	}
	db.stats.lookups.Add(1)
	// Placement may be electing a leader; the request need not wait for it.
	lctx, cancel := context.WithTimeout(ctx, placementTimeout)
	defer cancel()
	resp, err := pb.NewPlacementClient(conn).Lookup(lctx, &pb.LookupRequest{Key: key})
	if err != nil || resp.Descriptor_ == nil {
		pause := lookupPause
		switch status.Code(err) {
		case codes.Unimplemented, codes.PermissionDenied, codes.Unauthenticated:
			pause = lookupDisabledPause
		}
		db.lookupPausedUntil.Store(time.Now().Add(pause).UnixNano())
		return rangeEntry{}, false
	}
	db.learnNode(resp.LeaderNodeId, resp.LeaderAddr)
	e := rangeEntry{desc: resp.Descriptor_, leaderID: resp.LeaderNodeId, leaderAddr: resp.LeaderAddr}
	if e.leaderAddr == "" {
		e.leaderAddr = db.nodeAddr(e.leaderID)
	}
	if e.leaderAddr == "" && e.leaderID != 0 {
		db.resolveLater() // meanwhile requests go to seeds
	}
	db.cache.insert(e, false)
	// The cache decides: the answer may be older than what it holds, or
	// (placement lagging a split) not hold the key after all.
	return db.cache.get(key)
}

// learnNode records a node's address.
func (db *DB) learnNode(id uint64, addr string) {
	if id == 0 || addr == "" {
		return
	}
	db.mu.Lock()
	db.mu.nodes[id] = addr
	db.mu.Unlock()
}

// nodeAddr returns a node's address, or "" if unknown.
func (db *DB) nodeAddr(id uint64) string {
	if id == 0 {
		return ""
	}
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.mu.nodes[id]
}

// refreshNodes reloads the node address map with ListNodes, at most once
// per nodesRefreshInterval and one at a time.
func (db *DB) refreshNodes(ctx context.Context) {
	// A caller that finds a refresh running waits for its answer.
	db.refreshMu.Lock()
	defer db.refreshMu.Unlock()
	if time.Now().UnixNano()-db.nodesRefreshedAt.Load() < int64(nodesRefreshInterval) {
		return
	}
	db.nodesRefreshedAt.Store(time.Now().UnixNano())
	addr := db.seed()
	conn, err := db.conn(addr)
	if err != nil || !waitReady(ctx, conn) {
		return
	}
	db.stats.listNodes.Add(1)
	ctx, cancel := context.WithTimeout(ctx, placementTimeout)
	defer cancel()
	resp, err := pb.NewPlacementClient(conn).ListNodes(ctx, &pb.ListNodesRequest{})
	if err != nil {
		return
	}
	for _, n := range resp.Nodes {
		if rec := n.GetNode(); rec != nil && rec.State != pb.NodeRecord_DECOMMISSIONED {
			db.learnNode(rec.NodeId, rec.Addr)
		}
	}
}

// resolve returns the address of node id, refreshing the node map if it is
// unknown; "" if it stays unknown.
func (db *DB) resolve(ctx context.Context, id uint64) string {
	if addr := db.nodeAddr(id); addr != "" || id == 0 {
		return addr
	}
	db.refreshNodes(ctx)
	return db.nodeAddr(id)
}

// resolveLater refreshes the node map in the background, for a leader
// learned from a successful answer: the answer need not wait for it.
func (db *DB) resolveLater() {
	if time.Now().UnixNano()-db.nodesRefreshedAt.Load() < int64(nodesRefreshInterval) {
		return
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.mu.closed {
		return
	}
	db.bg.Add(1) // under mu, so never after Close's Wait began
	go func() {
		defer db.bg.Done()
		ctx, cancel := context.WithTimeout(db.bgCtx, db.cfg.RequestTimeout)
		defer cancel()
		db.refreshNodes(ctx)
	}()
}

// learnHeader corrects the cache from the header of a successful answer:
// the node that served it leads the range, and the range it names holds
// the key.
func (db *DB) learnHeader(key []byte, t target, h *pb.ResponseHeader) {
	if h == nil || h.NodeId == 0 {
		return
	}
	if h.NodeId == t.leaderID && (h.RangeId == 0 || h.RangeId == t.rangeID) {
		db.stats.direct.Add(1)
		return
	}
	db.stats.forwarded.Add(1)
	if !t.cached {
		return // nothing cached to correct; the next request looks it up
	}
	if h.RangeId != 0 && h.RangeId != t.rangeID {
		// The key lives in another range now (a split): look it up again.
		db.cache.evict(key, t.rangeID)
		return
	}
	addr := db.nodeAddr(h.NodeId)
	if addr == "" {
		db.resolveLater() // meanwhile requests go to seeds
	}
	db.cache.setLeader(key, t.rangeID, h.NodeId, addr)
}

// routingErrorOf extracts the routing hint of an Unavailable status, if any
// (as node.RoutingErrorOf does).
func routingErrorOf(err error) *pb.RoutingError {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return nil
	}
	for _, d := range st.Details() {
		if re, ok := d.(*pb.RoutingError); ok {
			return re
		}
	}
	return nil
}

// learnError corrects the cache from a failed attempt for key (nil: not
// routed by key) sent to t. It reports whether the next attempt should go at
// once rather than after a backoff, and where, if not where the cache says.
func (db *DB) learnError(ctx context.Context, key []byte, t target, conn *grpc.ClientConn, err error) (now bool, next *target) {
	re := routingErrorOf(err)
	if re == nil {
		if status.Code(err) != codes.Unavailable {
			return false, nil
		}
		if conn.GetState() != connectivity.Ready {
			// The connection broke: the node may be gone. Go elsewhere.
			if t.leaderID != 0 {
				db.leaderUnreachable(t.addr)
			} else {
				db.markFailed(t.addr)
			}
			return true, nil
		}
		if t.leaderID != 0 {
			// The leader failed us without a hint: it may have lost
			// leadership mid-request. Go through a seed next time.
			db.cache.setLeader(key, t.rangeID, 0, "")
		}
		return false, nil
	}
	db.stats.routingErrors.Add(1)
	if key == nil {
		return false, nil // sent to a seed, which refused: nothing to correct
	}
	if re.LeaderAddr != "" {
		db.learnNode(re.LeaderNodeId, re.LeaderAddr)
	}
	if re.Reason == pb.RoutingError_NOT_LEADER && re.LeaderNodeId == 0 {
		re.Reason = pb.RoutingError_NO_LEADER
	}
	switch re.Reason {
	case pb.RoutingError_NOT_LEADER:
		addr := re.LeaderAddr
		if addr == "" {
			addr = db.resolve(ctx, re.LeaderNodeId)
		}
		if addr == "" {
			// The leader's address is unknown: a seed forwards to it.
			if t.cached {
				db.cache.setLeader(key, t.rangeID, re.LeaderNodeId, "")
			}
			return false, nil
		}
		cur, ok := db.cache.get(key)
		switch {
		case re.Descriptor_ != nil && (!ok || re.Descriptor_.Generation > cur.desc.Generation):
			// A newer descriptor replaces what it overlaps. If the key is
			// not in it any more, the next request looks it up.
			db.cache.insert(rangeEntry{desc: re.Descriptor_, leaderID: re.LeaderNodeId, leaderAddr: addr}, true)
		case ok && (re.RangeId == 0 || re.RangeId == cur.desc.RangeId):
			db.cache.setLeader(key, cur.desc.RangeId, re.LeaderNodeId, addr)
		case ok:
			// The key is in another range than the cache says.
			db.cache.evict(key, cur.desc.RangeId)
		}
		// Follow the hint at once, whatever the cache now holds.
		next = &target{addr: addr, leaderID: re.LeaderNodeId}
		if e, ok := db.cache.get(key); ok && e.leaderAddr == addr {
			next.cached, next.rangeID = true, e.desc.RangeId
		}
		return addr != t.addr, next
	case pb.RoutingError_WRONG_RANGE:
		if re.Descriptor_ != nil {
			db.cache.insert(rangeEntry{desc: re.Descriptor_}, true)
		}
		if t.cached {
			db.cache.evict(key, t.rangeID)
			return true, nil // look it up again
		}
		return false, nil
	default: // NO_LEADER, or a reason this client does not know
		if re.Descriptor_ != nil {
			db.cache.insert(rangeEntry{desc: re.Descriptor_}, true)
		}
		if t.cached {
			db.cache.setLeader(key, t.rangeID, 0, "")
		}
		return false, nil
	}
}

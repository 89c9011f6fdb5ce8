package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Config configures a DB.
type Config struct {
	// Endpoints are node addresses (host:port); at least one. They are the
	// seeds: placement lookups go to them, and so do requests whose range
	// leader is unknown or unreachable (the node forwards them).
	Endpoints []string
	// RequestTimeout bounds each call that has no deadline of its own,
	// retries included (default 10s).
	RequestTimeout time.Duration
	// MaxTxnRetries bounds how often Txn reruns a conflicting closure
	// (default 20).
	MaxTxnRetries int
}

// DB is a connection to a RaftrixDB cluster. It is safe for concurrent use.
//
// DB routes each request for a key to the leader of the key's range, from a
// cache of range descriptors and leaders filled by placement lookups and
// corrected by every answer (see route.go).
type DB struct {
	cfg   Config
	seeds []string
	next  atomic.Uint64 // round robin over seeds
	cache *rangeCache

	// lookupPausedUntil (unix ns) skips placement lookups after one failed.
	lookupPausedUntil atomic.Int64
	// nodesRefreshedAt (unix ns) is when ListNodes was last asked; refreshMu
	// lets one ask at a time.
	nodesRefreshedAt atomic.Int64
	refreshMu        sync.Mutex

	// bgCtx ends at Close; bg tracks background refreshes.
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup

	// mu is read on every request (conn) and written rarely (a new
	// connection, a failure, a node address), so readers share it.
	mu struct {
		sync.RWMutex
		closed bool
		// conns holds one connection per address (seeds and leaders),
		// created on first use and shared by all requests.
		conns map[string]*grpc.ClientConn
		// batchers batches each connection's concurrent requests.
		batchers map[string]*kvBatcher
		// nodes maps node IDs to addresses, learned from lookups, routing
		// hints and ListNodes.
		nodes map[uint64]string
		// failedAt is when an address last could not be reached.
		failedAt map[string]time.Time
	}

	stats stats
}

// stats counts routing and batching events, for tests.
type stats struct {
	lookups, listNodes atomic.Int64
	// direct counts answers served by the leader the request was sent to;
	// forwarded counts answers served by another node than the target.
	direct, forwarded atomic.Int64
	routingErrors     atomic.Int64
	// batches counts KV.Batch calls, batchedRequests the requests in them.
	batches, batchedRequests atomic.Int64
}

// New returns a DB for a cluster. Connections are made lazily.
func New(cfg Config) (*DB, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("client: no endpoints")
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.MaxTxnRetries == 0 {
		cfg.MaxTxnRetries = 20
	}
	db := &DB{cfg: cfg, seeds: append([]string(nil), cfg.Endpoints...), cache: newRangeCache()}
	db.bgCtx, db.bgCancel = context.WithCancel(context.Background())
	db.mu.conns = map[string]*grpc.ClientConn{}
	db.mu.batchers = map[string]*kvBatcher{}
	db.mu.nodes = map[uint64]string{}
	db.mu.failedAt = map[string]time.Time{}
	for _, ep := range cfg.Endpoints {
		if _, err := db.conn(ep); err != nil {
			db.Close()
			return nil, fmt.Errorf("client: endpoint %q: %w", ep, err)
		}
	}
	return db, nil
}

// Close closes the connections. Calls in flight fail.
func (db *DB) Close() error {
	db.bgCancel()
	db.mu.Lock()
	db.mu.closed = true
	conns := db.mu.conns
	db.mu.conns = map[string]*grpc.ClientConn{}
	db.mu.batchers = map[string]*kvBatcher{}
	db.mu.Unlock()
	var first error
	for _, c := range conns {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	db.bg.Wait()
	return first
}

// ErrTxnConflict is returned by Txn when the closure kept conflicting with
// other writers until MaxTxnRetries.
var ErrTxnConflict = errors.New("client: transaction kept conflicting; giving up")

// retryable reports whether a call that failed after it was sent may be
// sent again. A write may be, only if it surely was not applied: the node
// refused it before doing anything (a RoutingError detail). A call never
// sent (its connection did not come up) is always retryable, and not
// judged here.
func retryable(err error, write bool) bool {
	if status.Code(err) != codes.Unavailable {
		return false
	}
	return !write || routingErrorOf(err) != nil
}

// call runs f against the leader of key's range (or a seed, which forwards)
// until it succeeds, fails for good, or ctx ends. f returns the answer's
// header, if it has one, to correct the range cache. A nil key sends to
// seeds only.
func (db *DB) call(ctx context.Context, key []byte, write bool, f func(context.Context, pb.KVClient) (*pb.ResponseHeader, error)) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, db.cfg.RequestTimeout)
		defer cancel()
	}
	wait := 10 * time.Millisecond
	immediate := 0
	var lastErr error
	var hinted *target // where a routing hint said to go next
	for {
		var t target
		switch {
		case hinted != nil:
			t, hinted = *hinted, nil
		case key != nil:
			t = db.route(ctx, key)
		default:
			t = target{addr: db.seed()}
		}
		conn, err := db.conn(t.addr)
		if err != nil {
			return err
		}
		var now bool
		if !waitReady(ctx, conn) {
			if ctx.Err() != nil {
				if lastErr == nil {
					lastErr = status.Errorf(status.FromContextError(ctx.Err()).Code(), "client: no connection to %s before the call ended; nothing was sent", t.addr)
				}
				return lastErr
			}
			// Nothing was sent: any request may go elsewhere.
			if t.leaderID != 0 {
				db.leaderUnreachable(t.addr)
			} else {
				db.markFailed(t.addr)
			}
			if lastErr == nil || routingErrorOf(lastErr) == nil {
				lastErr = status.Errorf(codes.Unavailable, "client: cannot connect to %s; nothing was sent", t.addr)
			}
			now = true
		} else {
			hdr, err := f(ctx, db.kv(t.addr, conn))
			if err == nil {
				if key != nil {
					db.learnHeader(key, t, hdr)
				}
				return nil
			}
			lastErr = err
			now, hinted = db.learnError(ctx, key, t, conn, err)
			if !retryable(err, write) {
				return err
			}
		}
		if ctx.Err() != nil {
			return lastErr
		}
		if now && immediate < maxImmediateRetries {
			immediate++
			continue
		}
		immediate = 0
		select {
		case <-time.After(wait/2 + time.Duration(rand.Int64N(int64(wait)))):
			wait = min(2*wait, 500*time.Millisecond)
		case <-ctx.Done():
			return lastErr
		}
	}
}

// Get reads a key linearizably. kv is nil if the key does not exist.
func (db *DB) Get(ctx context.Context, key []byte) (*pb.KeyValue, error) {
	var resp *pb.GetResponse
	err := db.call(ctx, key, false, func(ctx context.Context, c pb.KVClient) (*pb.ResponseHeader, error) {
		r, err := c.Get(ctx, &pb.GetRequest{Key: key})
		resp = r
		return r.GetHeader(), err
	})
	if err != nil {
		return nil, err
	}
	return resp.Kv, nil
}

// Put writes a key and returns its new revisions.
func (db *DB) Put(ctx context.Context, key, value []byte) (*pb.KeyValue, error) {
	return db.PutRequest(ctx, &pb.PutRequest{Key: key, Value: value})
}

// PutRequest sends a put with any of its options (if_absent,
// expected_mod_revision, expected_value). A failed condition is a
// FailedPrecondition status.
func (db *DB) PutRequest(ctx context.Context, req *pb.PutRequest) (*pb.KeyValue, error) {
	var resp *pb.PutResponse
	err := db.call(ctx, req.Key, true, func(ctx context.Context, c pb.KVClient) (*pb.ResponseHeader, error) {
		r, err := c.Put(ctx, req)
		resp = r
		return r.GetHeader(), err
	})
	if err != nil {
		return nil, err
	}
	return resp.Kv, nil
}

// Delete removes a key; it reports whether the key existed.
func (db *DB) Delete(ctx context.Context, key []byte) (bool, error) {
	var resp *pb.DeleteResponse
	err := db.call(ctx, key, true, func(ctx context.Context, c pb.KVClient) (*pb.ResponseHeader, error) {
		r, err := c.Delete(ctx, &pb.DeleteRequest{Key: key})
		resp = r
		return r.GetHeader(), err
	})
	if err != nil {
		return false, err
	}
	return resp.Deleted, nil
}

// Scan reads up to limit keys (0: all) of [start, end) in order, following
// continuation tokens across ranges.
//
// Each page goes to the leader of the range holding where it starts (the
// start key, then the last key of the previous page), which serves its own
// range and forwards the rest of the page range by range; the continuation
// token stays opaque to the client.
func (db *DB) Scan(ctx context.Context, start, end []byte, limit int) ([]*pb.KeyValue, error) {
	var out []*pb.KeyValue
	req := &pb.ScanRequest{Start: start, End: end}
	at := append([]byte{}, start...) // non-nil: route by key
	for {
		if limit > 0 {
			req.Limit = int64(min(limit-len(out), 1000))
		}
		var resp *pb.ScanResponse
		err := db.call(ctx, at, false, func(ctx context.Context, c pb.KVClient) (*pb.ResponseHeader, error) {
			r, err := c.Scan(ctx, req)
			resp = r
			return nil, err // a scan may span ranges: its answer has no header
		})
		if err != nil {
			return nil, err
		}
		out = append(out, resp.Kvs...)
		if len(resp.Continuation) == 0 || (limit > 0 && len(out) >= limit) {
			return out, nil
		}
		req.Continuation = resp.Continuation
		if len(resp.Kvs) > 0 {
			at = resp.Kvs[len(resp.Kvs)-1].Key
		}
	}
}

// Commit runs one etcd-style transaction (compares, success and failure
// branches) atomically across ranges.
//
// Any node coordinates a transaction; the client sends it to the leader of
// the range of its smallest key. When all its keys lie in that range (as
// far as the range cache knows), the leader runs it as a single Raft
// command. Otherwise the smallest key is the coordinator's primary key,
// which holds the transaction record, so the coordinator prepares that
// range, commits the record and resolves that range's intents without a
// network hop, and the transaction depends on one node less: a crash of the
// primary's leader stalls the transaction whoever coordinates it.
func (db *DB) Commit(ctx context.Context, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	var resp *pb.TxnResponse
	err := db.call(ctx, txnRouteKey(req), true, func(ctx context.Context, c pb.KVClient) (*pb.ResponseHeader, error) {
		r, err := c.Txn(ctx, req)
		resp = r
		return nil, err // the header names the coordinator, not a leader
	})
	return resp, err
}

// txnRouteKey returns the smallest key of req, or nil if it has none.
func txnRouteKey(req *pb.TxnRequest) []byte {
	if keys := pb.TxnKeys(req.Compare, req.Success, req.Failure); len(keys) > 0 {
		return keys[0]
	}
	return nil
}

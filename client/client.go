package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Config configures a DB.
type Config struct {
	// Endpoints are node addresses (host:port); at least one.
	Endpoints []string
	// RequestTimeout bounds each call that has no deadline of its own,
	// retries included (default 10s).
	RequestTimeout time.Duration
	// MaxTxnRetries bounds how often Txn reruns a conflicting closure
	// (default 20).
	MaxTxnRetries int
}

// DB is a connection to a RaftrixDB cluster. It is safe for concurrent use.
type DB struct {
	cfg   Config
	conns []*grpc.ClientConn
	kvs   []pb.KVClient
	next  atomic.Uint64
}

// New connects to a cluster. Connections are made lazily.
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
	db := &DB{cfg: cfg}
	for _, ep := range cfg.Endpoints {
		c, err := grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("client: endpoint %q: %w", ep, err)
		}
		db.conns = append(db.conns, c)
		db.kvs = append(db.kvs, pb.NewKVClient(c))
	}
	return db, nil
}

// Close closes the connections.
func (db *DB) Close() error {
	var first error
	for _, c := range db.conns {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// ErrTxnConflict is returned by Txn when the closure kept conflicting with
// other writers until MaxTxnRetries.
var ErrTxnConflict = errors.New("client: transaction kept conflicting; giving up")

// retryable reports whether a failed call may be sent again. A write may be
// retried only if it surely was not applied.
func retryable(err error, write bool, connWasReady bool) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	if st.Code() != codes.Unavailable {
		return false
	}
	if !write || !connWasReady {
		return true
	}
	for _, d := range st.Details() {
		if _, ok := d.(*pb.RoutingError); ok {
			return true
		}
	}
	return false
}

// call runs f against endpoints in turn until it succeeds, fails for good,
// or ctx ends.
func (db *DB) call(ctx context.Context, write bool, f func(context.Context, pb.KVClient) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, db.cfg.RequestTimeout)
		defer cancel()
	}
	wait := 10 * time.Millisecond
	for {
		i := int(db.next.Add(1) % uint64(len(db.kvs)))
		ready := db.conns[i].GetState() == connectivity.Ready
		err := f(ctx, db.kvs[i])
		if err == nil || !retryable(err, write, ready) || ctx.Err() != nil {
			return err
		}
		select {
		case <-time.After(wait/2 + time.Duration(rand.Int64N(int64(wait)))):
			wait = min(2*wait, 500*time.Millisecond)
		case <-ctx.Done():
			return err
		}
	}
}

// Get reads a key linearizably. kv is nil if the key does not exist.
func (db *DB) Get(ctx context.Context, key []byte) (*pb.KeyValue, error) {
	var resp *pb.GetResponse
	err := db.call(ctx, false, func(ctx context.Context, c pb.KVClient) (err error) {
		resp, err = c.Get(ctx, &pb.GetRequest{Key: key})
		return err
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
	err := db.call(ctx, true, func(ctx context.Context, c pb.KVClient) (err error) {
		resp, err = c.Put(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Kv, nil
}

// Delete removes a key; it reports whether the key existed.
func (db *DB) Delete(ctx context.Context, key []byte) (bool, error) {
	var resp *pb.DeleteResponse
	err := db.call(ctx, true, func(ctx context.Context, c pb.KVClient) (err error) {
		resp, err = c.Delete(ctx, &pb.DeleteRequest{Key: key})
		return err
	})
	if err != nil {
		return false, err
	}
	return resp.Deleted, nil
}

// Scan reads up to limit keys (0: all) of [start, end) in order, following
// continuation tokens across ranges.
func (db *DB) Scan(ctx context.Context, start, end []byte, limit int) ([]*pb.KeyValue, error) {
	var out []*pb.KeyValue
	req := &pb.ScanRequest{Start: start, End: end}
	for {
		if limit > 0 {
			req.Limit = int64(min(limit-len(out), 1000))
		}
		var resp *pb.ScanResponse
		err := db.call(ctx, false, func(ctx context.Context, c pb.KVClient) (err error) {
			resp, err = c.Scan(ctx, req)
			return err
		})
		if err != nil {
			return nil, err
		}
		out = append(out, resp.Kvs...)
		if len(resp.Continuation) == 0 || (limit > 0 && len(out) >= limit) {
			return out, nil
		}
		req.Continuation = resp.Continuation
	}
}

// Commit runs one etcd-style transaction (compares, success and failure
// branches) atomically across ranges.
func (db *DB) Commit(ctx context.Context, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	var resp *pb.TxnResponse
	err := db.call(ctx, true, func(ctx context.Context, c pb.KVClient) (err error) {
		resp, err = c.Txn(ctx, req)
		return err
	})
	return resp, err
}

package bench

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/raftrix/raftrixdb/client"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// raftrixDriver talks to RaftrixDB through the Go client library, as an
// application would: one client.DB whose range cache sends each request
// for a key straight to the leader of the key's range, so no node forwards
// it. The endpoints are the client's seeds (placement lookups, and requests
// whose leader is unknown). The client keeps one connection per node it
// talks to, shared by all workers; DriverConfig.Conns does not apply.
// Workers' concurrent gets, puts and deletes to one node go out together
// in KV.Batch calls, as any application's would (client/batch.go); etcd's
// client sends each request as its own call.
//
// The client retries what is safe to retry (reads on Unavailable, writes
// the node refused before doing anything) within the operation's deadline,
// so such a retry is part of one operation and of its latency. An
// operation with no deadline (--timeout 0) gets the client's
// RequestTimeout (10s).
type raftrixDriver struct {
	db *client.DB
	// adminAddr is the endpoint asked for the range list (userRangeStarts).
	adminAddr string
}

var _ TxnDriver = (*raftrixDriver)(nil)

func openRaftrix(cfg DriverConfig) (*raftrixDriver, error) {
	// The client connects lazily; a dead endpoint shows up as Unavailable
	// errors of the operations that need it.
	db, err := client.New(client.Config{Endpoints: cfg.Endpoints})
	if err != nil {
		return nil, err
	}
	return &raftrixDriver{db: db, adminAddr: cfg.Endpoints[0]}, nil
}

func (d *raftrixDriver) Get(ctx context.Context, key []byte) (bool, int64, error) {
	kv, err := d.db.Get(ctx, key)
	if err != nil || kv == nil {
		return false, 0, err
	}
	return true, kv.ModRevision, nil
}

func (d *raftrixDriver) Put(ctx context.Context, key, value []byte) error {
	_, err := d.db.Put(ctx, key, value)
	return err
}

func (d *raftrixDriver) CompareAndPut(ctx context.Context, key, value []byte, expectedModRev int64) (bool, error) {
	_, err := d.db.PutRequest(ctx, &pb.PutRequest{Key: key, Value: value, ExpectedModRevision: &expectedModRev})
	if isCompareFailed(err) {
		return false, nil
	}
	return err == nil, err
}

// isCompareFailed tells a failed compare (FailedPrecondition) from a
// routing refusal, which has the same code but carries a RoutingError.
func isCompareFailed(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		return false
	}
	for _, d := range st.Details() {
		if _, ok := d.(*pb.RoutingError); ok {
			return false
		}
	}
	return true
}

// Scan reads up to limit keys from start to the end of the user key space.
// The client sends it to the leader of start's range and follows the
// continuation across ranges until limit keys or the end.
func (d *raftrixDriver) Scan(ctx context.Context, start []byte, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil // the client's limit 0 would read every key
	}
	kvs, err := d.db.Scan(ctx, start, nil, limit)
	return len(kvs), err
}

func (d *raftrixDriver) GetValue(ctx context.Context, key []byte) ([]byte, int64, bool, error) {
	kv, err := d.db.Get(ctx, key)
	if err != nil || kv == nil {
		return nil, 0, false, err
	}
	return kv.Value, kv.ModRevision, true, nil
}

// CompareAndPutAll is one KV.Txn (client.DB.Commit): a MOD_REVISION EQUAL
// compare per key, then the (get and) put of every key, or else a get of
// every key. When the client's range cache puts every key in one range, the
// txn goes to that range's leader, which runs it as one Raft command;
// otherwise it goes to a seed endpoint (in turn), which coordinates it with
// two-phase commit.
func (d *raftrixDriver) CompareAndPutAll(ctx context.Context, keys, values [][]byte, expect []int64, read bool) (TxnResult, error) {
	req := &pb.TxnRequest{}
	for i, k := range keys {
		if expect != nil {
			req.Compare = append(req.Compare, &pb.Compare{Key: k, Target: pb.Compare_MOD_REVISION, Result: pb.Compare_EQUAL, ModRevision: expect[i]})
			req.Failure = append(req.Failure, &pb.RequestOp{Request: &pb.RequestOp_Get{Get: &pb.GetRequest{Key: k}}})
		}
		if read {
			req.Success = append(req.Success, &pb.RequestOp{Request: &pb.RequestOp_Get{Get: &pb.GetRequest{Key: k}}})
		}
		req.Success = append(req.Success, &pb.RequestOp{Request: &pb.RequestOp_Put{Put: &pb.PutRequest{Key: k, Value: values[i]}}})
	}
	resp, err := d.db.Commit(ctx, req)
	if err != nil {
		return TxnResult{}, err
	}
	if resp.Succeeded {
		return TxnResult{Succeeded: true, Revision: resp.Revision}, nil
	}
	res := TxnResult{ModRevs: make([]int64, len(keys))}
	for i, r := range resp.Responses {
		if i < len(keys) {
			res.ModRevs[i] = r.GetGet().GetKv().GetModRevision() // 0 when not found
		}
	}
	return res, nil
}

// userRangeStarts returns the start keys of the user ranges that the
// first endpoint's node holds, in order, the first range's empty start
// left out. It is asked once per run, on a connection of its own.
func (d *raftrixDriver) userRangeStarts(ctx context.Context) ([][]byte, error) {
	cc, err := grpc.NewClient(d.adminAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", d.adminAddr, err)
	}
	defer cc.Close()
	resp, err := pb.NewAdminClient(cc).ListRanges(ctx, &pb.ListRangesRequest{})
	if err != nil {
		return nil, err
	}
	var starts [][]byte
	for _, r := range resp.Ranges {
		k := r.GetDescriptor_().GetStartKey()
		if len(k) > 0 && bytes.Compare(k, []byte{0xff, 0xff}) < 0 {
			starts = append(starts, k)
		}
	}
	slices.SortFunc(starts, bytes.Compare)
	return starts, nil
}

func (d *raftrixDriver) Close() error {
	return d.db.Close()
}

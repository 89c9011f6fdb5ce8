package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// raftrixDriver talks to RaftrixDB's KV service. Every node accepts every
// request and forwards it to the range's leader, so the driver does no
// routing of its own: it spreads operations over its connections.
type raftrixDriver struct {
	conns   []*grpc.ClientConn
	clients []pb.KVClient
	next    atomic.Uint64
}

var _ TxnDriver = (*raftrixDriver)(nil)

func openRaftrix(cfg DriverConfig) (*raftrixDriver, error) {
	d := &raftrixDriver{}
	for i := 0; i < cfg.conns(); i++ {
		addr := cfg.Endpoints[i%len(cfg.Endpoints)]
		// grpc.NewClient connects lazily; a dead endpoint shows up as
		// Unavailable errors of the operations sent to it.
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("endpoint %s: %w", addr, err)
		}
		d.conns = append(d.conns, cc)
		d.clients = append(d.clients, pb.NewKVClient(cc))
	}
	return d, nil
}

// client picks the next connection, round-robin.
func (d *raftrixDriver) client() pb.KVClient {
	return d.clients[(d.next.Add(1)-1)%uint64(len(d.clients))]
}

func (d *raftrixDriver) Get(ctx context.Context, key []byte) (bool, int64, error) {
	resp, err := d.client().Get(ctx, &pb.GetRequest{Key: key})
	if err != nil {
		return false, 0, err
	}
	if !resp.Found {
		return false, 0, nil
	}
	return true, resp.GetKv().GetModRevision(), nil
}

func (d *raftrixDriver) Put(ctx context.Context, key, value []byte) error {
	_, err := d.client().Put(ctx, &pb.PutRequest{Key: key, Value: value})
	return err
}

func (d *raftrixDriver) CompareAndPut(ctx context.Context, key, value []byte, expectedModRev int64) (bool, error) {
	_, err := d.client().Put(ctx, &pb.PutRequest{Key: key, Value: value, ExpectedModRevision: &expectedModRev})
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

func (d *raftrixDriver) Scan(ctx context.Context, start []byte, limit int) (int, error) {
	c := d.client()
	req := &pb.ScanRequest{Start: start, Limit: int64(limit)}
	n := 0
	for {
		resp, err := c.Scan(ctx, req)
		if err != nil {
			return n, err
		}
		n += len(resp.Kvs)
		// A page may stop short of the limit at a range boundary; follow
		// the continuation until the limit or the end of the key space.
		if len(resp.Continuation) == 0 || n >= limit {
			return n, nil
		}
		req.Continuation = resp.Continuation
		req.Limit = int64(limit - n)
	}
}

func (d *raftrixDriver) GetValue(ctx context.Context, key []byte) ([]byte, int64, bool, error) {
	resp, err := d.client().Get(ctx, &pb.GetRequest{Key: key})
	if err != nil || !resp.Found {
		return nil, 0, false, err
	}
	return resp.GetKv().GetValue(), resp.GetKv().GetModRevision(), true, nil
}

// CompareAndPutAll is one KV.Txn: a MOD_REVISION EQUAL compare per key,
// then the (get and) put of every key, or else a get of every key. The
// node that receives it coordinates it: one Raft command when the keys lie
// in one range, two-phase commit otherwise.
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
	resp, err := d.client().Txn(ctx, req)
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
// left out.
func (d *raftrixDriver) userRangeStarts(ctx context.Context) ([][]byte, error) {
	resp, err := pb.NewAdminClient(d.conns[0]).ListRanges(ctx, &pb.ListRangesRequest{})
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
	var errs []error
	for _, cc := range d.conns {
		errs = append(errs, cc.Close())
	}
	return errors.Join(errs...)
}

package bench

import (
	"context"
	"errors"
	"fmt"
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

var _ Driver = (*raftrixDriver)(nil)

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

func (d *raftrixDriver) Close() error {
	var errs []error
	for _, cc := range d.conns {
		errs = append(errs, cc.Close())
	}
	return errors.Join(errs...)
}

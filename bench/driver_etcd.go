package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdDriver runs the same workloads against etcd, for comparison. Like the
// raftrix driver, connection i is pinned to endpoint i mod len(endpoints),
// and a member that does not lead forwards writes to the leader; reads are
// etcd's default, linearizable, as raftrix's are.
type etcdDriver struct {
	clients []*clientv3.Client
	next    atomic.Uint64
}

var _ TxnDriver = (*etcdDriver)(nil)

func openEtcd(cfg DriverConfig) (*etcdDriver, error) {
	d := &etcdDriver{}
	for i := 0; i < cfg.conns(); i++ {
		addr := cfg.Endpoints[i%len(cfg.Endpoints)]
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{addr},
			DialTimeout: cfg.DialTimeout,
			// The client's own logging would interleave with the live line.
			Logger: zap.NewNop(),
		})
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("etcd endpoint %s: %w", addr, err)
		}
		d.clients = append(d.clients, c)
	}
	return d, nil
}

func (d *etcdDriver) client() *clientv3.Client {
	return d.clients[(d.next.Add(1)-1)%uint64(len(d.clients))]
}

func (d *etcdDriver) Get(ctx context.Context, key []byte) (bool, int64, error) {
	resp, err := d.client().Get(ctx, string(key))
	if err != nil {
		return false, 0, err
	}
	if len(resp.Kvs) == 0 {
		return false, 0, nil
	}
	return true, resp.Kvs[0].ModRevision, nil
}

func (d *etcdDriver) Put(ctx context.Context, key, value []byte) error {
	_, err := d.client().Put(ctx, string(key), string(value))
	return err
}

// CompareAndPut is a one-compare Txn; etcd, like raftrix, gives an absent
// key mod revision 0.
func (d *etcdDriver) CompareAndPut(ctx context.Context, key, value []byte, expectedModRev int64) (bool, error) {
	k := string(key)
	resp, err := d.client().Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", expectedModRev)).
		Then(clientv3.OpPut(k, string(value))).
		Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// Scan is a range read from start to the end of the key space
// (WithFromKey, i.e. WithRange("\x00")) capped by WithLimit.
func (d *etcdDriver) Scan(ctx context.Context, start []byte, limit int) (int, error) {
	resp, err := d.client().Get(ctx, string(start), clientv3.WithFromKey(), clientv3.WithLimit(int64(limit)))
	if err != nil {
		return 0, err
	}
	return len(resp.Kvs), nil
}

func (d *etcdDriver) GetValue(ctx context.Context, key []byte) ([]byte, int64, bool, error) {
	resp, err := d.client().Get(ctx, string(key))
	if err != nil || len(resp.Kvs) == 0 {
		return nil, 0, false, err
	}
	return resp.Kvs[0].Value, resp.Kvs[0].ModRevision, true, nil
}

// CompareAndPutAll is one etcd Txn with the same compares and operations
// as the raftrix driver's KV.Txn. etcd's default --max-txn-ops of 128
// bounds each branch, which maxKeysPerTxn respects.
func (d *etcdDriver) CompareAndPutAll(ctx context.Context, keys, values [][]byte, expect []int64, read bool) (TxnResult, error) {
	var cmps []clientv3.Cmp
	var then, els []clientv3.Op
	for i, key := range keys {
		k := string(key)
		if expect != nil {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", expect[i]))
			els = append(els, clientv3.OpGet(k))
		}
		if read {
			then = append(then, clientv3.OpGet(k))
		}
		then = append(then, clientv3.OpPut(k, string(values[i])))
	}
	resp, err := d.client().Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
	if err != nil {
		return TxnResult{}, err
	}
	if resp.Succeeded {
		return TxnResult{Succeeded: true, Revision: resp.Header.Revision}, nil
	}
	res := TxnResult{ModRevs: make([]int64, len(keys))}
	for i, r := range resp.Responses {
		if kvs := r.GetResponseRange().GetKvs(); i < len(keys) && len(kvs) > 0 {
			res.ModRevs[i] = kvs[0].ModRevision
		}
	}
	return res, nil
}

func (d *etcdDriver) Close() error {
	var errs []error
	for _, c := range d.clients {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

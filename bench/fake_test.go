package bench

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// memDriver is an in-memory Driver with etcd-like revisions, for tests. It
// can delay every operation and note when each one started.
type memDriver struct {
	delay time.Duration
	// bumpOnRead makes every Get followed by a write of another client.
	bumpOnRead bool

	// tornTxns makes CompareAndPutAll write only its first key: a store
	// that breaks atomicity, for the bank's check.
	tornTxns bool

	mu     sync.Mutex
	rev    int64
	kvs    map[string]int64  // key -> mod revision
	vals   map[string][]byte // key -> value; nil until a write
	starts []time.Time
	txns   int
}

var _ TxnDriver = (*memDriver)(nil)

func newMemDriver() *memDriver { return &memDriver{kvs: map[string]int64{}} }

func (d *memDriver) begin(ctx context.Context) error {
	d.mu.Lock()
	d.starts = append(d.starts, time.Now())
	d.mu.Unlock()
	if d.delay > 0 {
		select {
		case <-time.After(d.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (d *memDriver) Get(ctx context.Context, key []byte) (bool, int64, error) {
	if err := d.begin(ctx); err != nil {
		return false, 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	rev, ok := d.kvs[string(key)]
	if d.bumpOnRead {
		d.rev++
		d.kvs[string(key)] = d.rev
	}
	return ok, rev, nil
}

func (d *memDriver) Put(ctx context.Context, key, value []byte) error {
	if err := d.begin(ctx); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.putLocked(key, value)
	return nil
}

func (d *memDriver) putLocked(key, value []byte) {
	d.rev++
	d.kvs[string(key)] = d.rev
	if d.vals == nil {
		d.vals = map[string][]byte{}
	}
	d.vals[string(key)] = append([]byte(nil), value...)
}

func (d *memDriver) GetValue(ctx context.Context, key []byte) ([]byte, int64, bool, error) {
	found, rev, err := d.Get(ctx, key)
	if err != nil || !found {
		return nil, 0, false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]byte(nil), d.vals[string(key)]...), rev, true, nil
}

func (d *memDriver) CompareAndPutAll(ctx context.Context, keys, values [][]byte, expect []int64, read bool) (TxnResult, error) {
	if err := d.begin(ctx); err != nil {
		return TxnResult{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.txns++
	seen := map[string]bool{}
	for i, k := range keys {
		if seen[string(k)] {
			return TxnResult{}, fmt.Errorf("key %q twice in one transaction", k)
		}
		seen[string(k)] = true
		if expect != nil && d.kvs[string(k)] != expect[i] {
			res := TxnResult{ModRevs: make([]int64, len(keys))}
			for j, k := range keys {
				res.ModRevs[j] = d.kvs[string(k)]
			}
			return res, nil
		}
	}
	d.rev++
	if d.vals == nil {
		d.vals = map[string][]byte{}
	}
	for i, k := range keys {
		d.kvs[string(k)] = d.rev
		d.vals[string(k)] = append([]byte(nil), values[i]...)
		if d.tornTxns {
			break
		}
	}
	return TxnResult{Succeeded: true, Revision: d.rev}, nil
}

func (d *memDriver) CompareAndPut(ctx context.Context, key, value []byte, expected int64) (bool, error) {
	if err := d.begin(ctx); err != nil {
		return false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.kvs[string(key)] != expected {
		return false, nil
	}
	d.rev++
	d.kvs[string(key)] = d.rev
	return true, nil
}

func (d *memDriver) Scan(ctx context.Context, start []byte, limit int) (int, error) {
	if err := d.begin(ctx); err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for k := range d.kvs {
		if bytes.Compare([]byte(k), start) >= 0 {
			n++
		}
	}
	return min(n, limit), nil
}

func (d *memDriver) Close() error { return nil }

// startTimes returns when the operations began, in order.
func (d *memDriver) startTimes() []time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := append([]time.Time(nil), d.starts...)
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

package bench

import (
	"bytes"
	"context"
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

	mu     sync.Mutex
	rev    int64
	kvs    map[string]int64 // key -> mod revision
	starts []time.Time
}

var _ Driver = (*memDriver)(nil)

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
	d.rev++
	d.kvs[string(key)] = d.rev
	return nil
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

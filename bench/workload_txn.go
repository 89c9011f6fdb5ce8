package bench

import (
	"context"
	"fmt"
	"sync/atomic"
)

// TxnOptions are the txn workload's knobs.
type TxnOptions struct {
	// KeysPerTxn is how many keys each transaction reads, compares and
	// writes; RangesPerTxn how many distinct ranges they lie in.
	KeysPerTxn, RangesPerTxn int
	// Ranges is the cluster's number of initial user ranges (raftrix start
	// --ranges), which places the keys (keys_ranges.go).
	Ranges int
	// Dist must be uniform (or empty): keys are drawn uniformly within the
	// ranges chosen.
	Dist               string
	Keys               uint64
	KeySize, ValueSize int
}

// TxnSpec returns the txn workload: every operation is one transaction
// over KeysPerTxn keys in RangesPerTxn ranges, a multi-key compare-and-set
// in the way of etcd's STM:
//
//	if   mod_revision(k) == rev(k) for every key k
//	then get k; put k new-value   for every key k
//	else get k                    for every key k
//
// where rev(k) is the last mod revision of k that any worker saw (from the
// load, an earlier success's revision or an earlier failure's gets; a key
// never seen is read with a Get first). A failed compare is a conflict:
// the transaction's gets refresh what the workers know, and the next
// transaction on those keys is expected to succeed. The same transaction
// runs on RaftrixDB (one KV.Txn) and on etcd (one Txn).
func TxnSpec(o TxnOptions) (Spec, error) {
	if o.Dist != "" && o.Dist != distUniform {
		return Spec{}, fmt.Errorf("the txn workload draws keys uniformly within the ranges it picks; --key-dist %s is not supported", o.Dist)
	}
	s := Spec{
		Name:         "txn",
		Txn:          1,
		Dist:         distUniform,
		Keys:         o.Keys,
		KeySize:      o.KeySize,
		ValueSize:    o.ValueSize,
		KeysPerTxn:   o.KeysPerTxn,
		RangesPerTxn: o.RangesPerTxn,
		Ranges:       o.Ranges,
	}
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	s.revs = newRevTable(s.Keys)
	return s, nil
}

func (s *Spec) validateTxn() error {
	return checkTxnShape(s.KeysPerTxn, s.RangesPerTxn, s.Ranges, s.Keys)
}

// revTable is what the txn workload's workers know of each key's mod
// revision: -1 unknown, 0 absent. A key's mod revision only grows, so an
// update keeps the larger value and the order of updates does not matter.
type revTable struct {
	revs []atomic.Int64
}

func newRevTable(keys uint64) *revTable {
	t := &revTable{revs: make([]atomic.Int64, keys)}
	for i := range t.revs {
		t.revs[i].Store(-1)
	}
	return t
}

// get returns key i's last known mod revision, if any.
func (t *revTable) get(i uint64) (int64, bool) {
	if i >= uint64(len(t.revs)) {
		return 0, false
	}
	v := t.revs[i].Load()
	return v, v >= 0
}

// observe records that key i had mod revision rev.
func (t *revTable) observe(i uint64, rev int64) {
	if i >= uint64(len(t.revs)) {
		return
	}
	for {
		cur := t.revs[i].Load()
		if cur >= rev || t.revs[i].CompareAndSwap(cur, rev) {
			return
		}
	}
}

// multiKeyBuf holds one worker's keys, values and compares of a
// transaction or transfer, reused from one operation to the next.
type multiKeyBuf struct {
	idx    []uint64
	keys   [][]byte
	values [][]byte
	expect []int64
	own    [][]byte // value buffers the worker writes (balances)
}

// setKeys sizes the buffers for m.idx and fills in their keys.
func (m *multiKeyBuf) setKeys(w *workload) {
	n := len(m.idx)
	if cap(m.keys) < n {
		m.keys, m.values, m.expect, m.own = make([][]byte, n), make([][]byte, n), make([]int64, n), make([][]byte, n)
	}
	m.keys, m.values, m.expect, m.own = m.keys[:n], m.values[:n], m.expect[:n], m.own[:n]
	for j, i := range m.idx {
		m.keys[j] = w.appendKey(m.keys[j][:0], i)
	}
}

// txn runs one transaction of the txn workload.
func (wk *worker) txn(ctx context.Context, d TxnDriver) (outcome, error) {
	w, m := wk.w, &wk.multi
	m.idx = w.layout.pickTxnKeys(m.idx[:0], wk.rng, w.spec.KeysPerTxn, w.spec.RangesPerTxn, w.spec.Keys)
	m.setKeys(w)
	for j, i := range m.idx {
		rev, known := w.revs.get(i)
		if !known {
			found, r, err := d.Get(ctx, m.keys[j])
			if err != nil {
				return outcomeOK, err
			}
			if !found {
				r = 0
			}
			w.revs.observe(i, r)
			rev = r
		}
		m.expect[j] = rev
		m.values[j] = w.values.value(wk.rng)
	}
	res, err := d.CompareAndPutAll(ctx, m.keys, m.values, m.expect, true)
	if err != nil {
		return outcomeOK, err
	}
	if res.Succeeded {
		for _, i := range m.idx {
			w.revs.observe(i, res.Revision)
		}
		return outcomeOK, nil
	}
	for j, i := range m.idx {
		w.revs.observe(i, res.ModRevs[j])
	}
	return outcomeConflict, nil
}

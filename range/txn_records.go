package replica

import (
	"bytes"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// TxnRecords holds every transaction record of the node's engine in memory,
// so that applying a transaction command finds a record, or learns that
// there is none, without reading Pebble.
//
// Why: the prepare on a transaction's primary range reads the record of a
// transaction that has just started, so it is nearly always absent, and
// the end reads it again. Pebble's point read of a key walks the memtables
// (fragmenting their range deletions, which the Raft log's truncations
// keep adding) and the tables' filters: those reads were 5% of the nodes'
// CPU under 4-range transactions (scripts/profile.sh, BENCHMARKS.md). A
// cache could not answer them, since no one read that record before; only
// an index that holds every record can say "absent".
//
// It is only correct because it holds every record of the engine: Load
// reads them all when the node opens the engine, and every change to a
// record goes through it:
//   - the state machine sets and deletes records in its batch and here, as
//     it applies (a record belongs to one range, and a range is applied by
//     one worker at a time);
//   - installing a snapshot and destroying a replica replace a range's
//     records wholesale, and call ReplaceSpan and DropSpan.
//
// Like the record cache it may hold a change whose batch is not committed
// yet: only committed entries are applied, so the change is decided, and a
// batch that fails to commit stops the node.
//
// Records are few: a finished transaction's record is deleted once its
// intents are resolved. Nothing bounds the records of abandoned
// transactions, though: past maxRecords the index turns itself off for good
// (until the node restarts) and records are read from the engine again. It
// also turns itself off if it meets a record it cannot decode, leaving that
// record's error to the command that reads it, as before the index.
//
// A nil *TxnRecords knows nothing: every Get reports the record unknown.
type TxnRecords struct {
	mu         sync.Mutex
	maxRecords int
	// m maps a record's engine key to the record; nil once the index has
	// turned itself off (or before Load).
	m map[string]*pb.TxnRecord
}

// DefaultMaxTxnRecords bounds the records the index holds (about 150 bytes
// each).
const DefaultMaxTxnRecords = 200_000

// NewTxnRecords returns an index that holds up to maxRecords records; it
// knows nothing until Load.
func NewTxnRecords(maxRecords int) *TxnRecords {
	return &TxnRecords{maxRecords: maxRecords}
}

// Load reads every transaction record of the engine into the index. Call it
// once the engine is open and before any replica applies a command.
func (t *TxnRecords) Load(r pebble.Reader) error {
	lo, hi := TxnRecordSpan(nil, nil)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	m := make(map[string]*pb.TxnRecord)
	for ok := it.First(); ok && m != nil; ok = it.Next() {
		rec := &pb.TxnRecord{}
		if err := rec.UnmarshalVT(it.Value()); err != nil {
			m = nil // off: see above
			break
		}
		m[string(it.Key())] = rec
	}
	if err := it.Error(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.m = m
	t.checkSizeLocked()
	return nil
}

// Get returns a copy of the record stored under key; known is false when
// the index cannot tell (it is off), and then the engine must be read.
func (t *TxnRecords) Get(key []byte) (rec *pb.TxnRecord, known bool) {
	if t == nil {
		return nil, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		return nil, false
	}
	if rec, ok := t.m[string(key)]; ok {
		// Callers change the record they read (an end commits it) and hand
		// it out in results: the index keeps its own.
		return copyTxnRecord(rec), true
	}
	return nil, true
}

// update runs change with the lock held, unless there is no index or it is
// off: then there is nothing to keep up to date.
func (t *TxnRecords) update(change func()) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m != nil {
		change()
	}
}

// set records that key now holds rec (the caller keeps rec).
func (t *TxnRecords) set(key []byte, rec *pb.TxnRecord) {
	t.update(func() {
		t.m[string(key)] = copyTxnRecord(rec)
		t.checkSizeLocked()
	})
}

// delete records that key holds no record.
func (t *TxnRecords) delete(key []byte) {
	t.update(func() { delete(t.m, string(key)) })
}

// DropSpan forgets the records of the range desc (its data is being
// destroyed).
func (t *TxnRecords) DropSpan(desc *pb.RangeDescriptor) {
	t.update(func() { t.dropSpanLocked(desc) })
}

// dropSpanLocked forgets the records of desc; the index must be on.
func (t *TxnRecords) dropSpanLocked(desc *pb.RangeDescriptor) {
	lo, hi := TxnRecordSpan(desc.StartKey, desc.EndKey)
	for k := range t.m {
		if k >= string(lo) && k < string(hi) {
			delete(t.m, k)
		}
	}
}

// ReplaceSpan replaces the records of the ranges in drop (a replica's
// descriptors before and after a snapshot) with the records among kvs, the
// snapshot's engine keys.
func (t *TxnRecords) ReplaceSpan(drop []*pb.RangeDescriptor, kvs []*pb.EngineKV) {
	t.update(func() {
		for _, d := range drop {
			t.dropSpanLocked(d)
		}
		lo, hi := TxnRecordSpan(nil, nil)
		for _, kv := range kvs {
			if bytes.Compare(kv.Key, lo) < 0 || bytes.Compare(kv.Key, hi) >= 0 {
				continue
			}
			rec := &pb.TxnRecord{}
			if err := rec.UnmarshalVT(kv.Value); err != nil {
				t.m = nil // off: see above
				return
			}
			t.m[string(kv.Key)] = rec
		}
		t.checkSizeLocked()
	})
}

// checkSizeLocked turns the index off once it holds more than maxRecords.
func (t *TxnRecords) checkSizeLocked() {
	if t.m != nil && len(t.m) > t.maxRecords {
		t.m = nil
	}
}

// Len reports the records held, and false if the index is off.
func (t *TxnRecords) Len() (int, bool) {
	if t == nil {
		return 0, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m), t.m != nil
}

// copyTxnRecord copies a record field by field (the generated code has no
// clone, and proto.Clone goes through reflection). The transaction ID's
// bytes are shared: no one writes into them.
func copyTxnRecord(r *pb.TxnRecord) *pb.TxnRecord {
	return &pb.TxnRecord{
		TxnId:          r.TxnId,
		Status:         r.Status,
		Succeeded:      r.Succeeded,
		CommitRevision: r.CommitRevision,
		Heartbeat:      r.Heartbeat,
		Priority:       r.Priority,
	}
}

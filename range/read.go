package replica

import (
	"bytes"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Get reads key's committed value from this replica's local state, and the
// intent of a transaction that holds the key, if any: a reader must settle
// such an intent (see package txn) before trusting the value. Whether the
// read is linearizable depends on the caller: call ReadIndex first on the
// leader; without it the read may be stale.
func (r *Replica) Get(key []byte) (*pb.KeyValue, *pb.Intent, error) {
	if desc := r.Descriptor(); !ContainsKey(desc, key) {
		return nil, nil, &KeyOutOfRangeError{RangeID: r.rangeID, Key: key}
	}
	// The record cache answers without a Pebble read; it never lags the
	// engine (see RecordCache). What is read from Pebble is not cached: it
	// could be older than a record applied meanwhile.
	if rec, ok := r.cfg.Records.Get(key); ok {
		if rec == nil {
			return nil, nil, nil
		}
		return committedKV(key, rec), rec.Intent, nil
	}
	rec, err := readValueRecord(r.cfg.DB, key)
	if err != nil {
		return nil, nil, err
	}
	return committedKV(key, rec), rec.Intent, nil
}

// KeyIntent is an intent met by a scan.
type KeyIntent struct {
	Key    []byte
	Intent *pb.Intent
}

// ScanResult is what Scan read.
type ScanResult struct {
	// KVs are the committed values in key order.
	KVs []*pb.KeyValue
	// Intents are the transaction intents met on the way; the caller settles
	// them before trusting KVs.
	Intents []KeyIntent
	// More reports that the limit cut the scan short; resume after the last
	// key of KVs.
	More bool
}

// Scan reads up to limit committed keys of [start, end) from local state,
// clipped to the range's span.
func (r *Replica) Scan(start, end []byte, limit int, keysOnly bool) (ScanResult, error) {
	var res ScanResult
	desc := r.Descriptor()
	if bytes.Compare(start, desc.StartKey) < 0 {
		start = desc.StartKey
	}
	if len(desc.EndKey) > 0 && (len(end) == 0 || bytes.Compare(end, desc.EndKey) > 0) {
		end = desc.EndKey
	}
	lo, hi := UserSpan(start, end)
	it, err := r.cfg.DB.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return res, err
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		rec := &pb.ValueRecord{}
		if err := rec.UnmarshalVT(it.Value()); err != nil {
			return res, fmt.Errorf("decode value at %x: %w", it.Key(), err)
		}
		key, err := DecodeUserKey(it.Key())
		if err != nil {
			return res, err
		}
		if rec.Intent != nil {
			res.Intents = append(res.Intents, KeyIntent{Key: append([]byte(nil), key...), Intent: rec.Intent})
		}
		if rec.ModRevision == 0 {
			continue // only an intent, no committed value
		}
		if len(res.KVs) == limit {
			res.More = true
			return res, nil
		}
		res.KVs = append(res.KVs, recordToKV(key, rec, keysOnly))
	}
	return res, it.Error()
}

// ApproximateSize is Pebble's estimate of the bytes the range's user data
// takes on disk.
func (r *Replica) ApproximateSize() int64 {
	desc := r.Descriptor()
	lo, hi := UserSpan(desc.StartKey, desc.EndKey)
	n, err := r.cfg.DB.EstimateDiskUsage(lo, hi)
	if err != nil {
		return 0
	}
	return int64(n)
}

// MiddleKey returns the user key that splits the range's data in two halves
// by size, for a split. It fails if the range holds too little to split.
func (r *Replica) MiddleKey() ([]byte, error) {
	desc := r.Descriptor()
	lo, hi := UserSpan(desc.StartKey, desc.EndKey)
	snap := r.cfg.DB.NewSnapshot()
	defer snap.Close()
	var total int64
	if err := iterateSpan(snap, [2][]byte{lo, hi}, func(k, v []byte) error {
		total += int64(len(k) + len(v))
		return nil
	}); err != nil {
		return nil, err
	}
	var seen int64
	var mid []byte
	errFound := fmt.Errorf("found")
	err := iterateSpan(snap, [2][]byte{lo, hi}, func(k, v []byte) error {
		seen += int64(len(k) + len(v))
		if seen*2 >= total {
			key, err := DecodeUserKey(k)
			if err != nil {
				return err
			}
			mid = append([]byte(nil), key...)
			return errFound
		}
		return nil
	})
	if err != nil && err != errFound {
		return nil, err
	}
	if mid == nil || bytes.Equal(mid, desc.StartKey) {
		return nil, fmt.Errorf("range %d holds too little data to split", desc.RangeId)
	}
	return mid, nil
}

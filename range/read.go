package replica

import (
	"bytes"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Get reads key from this replica's local state. Whether that is
// linearizable depends on the caller: call ReadIndex first on the leader for
// a linearizable read; without it the read may be stale.
func (r *Replica) Get(key []byte) (*pb.KeyValue, error) {
	if desc := r.Descriptor(); !ContainsKey(desc, key) {
		return nil, &KeyOutOfRangeError{RangeID: r.rangeID, Key: key}
	}
	return readRecord(r.cfg.DB, key)
}

// Scan reads up to limit keys of [start, end) from local state, clipped to
// the range's span. more reports that the limit cut the scan short; resume
// at the key after the last one returned.
func (r *Replica) Scan(start, end []byte, limit int, keysOnly bool) (kvs []*pb.KeyValue, more bool, err error) {
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
		return nil, false, err
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		if len(kvs) == limit {
			return kvs, true, nil
		}
		rec := &pb.ValueRecord{}
		if err := proto.Unmarshal(it.Value(), rec); err != nil {
			return nil, false, fmt.Errorf("decode value at %x: %w", it.Key(), err)
		}
		key, err := DecodeUserKey(it.Key())
		if err != nil {
			return nil, false, err
		}
		kvs = append(kvs, recordToKV(key, rec, keysOnly))
	}
	return kvs, false, it.Error()
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

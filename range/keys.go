package replica

import (
	"encoding/binary"
	"fmt"
)

// Engine key layout. All replicas of a node share one Pebble engine, so every
// key starts with a one-byte prefix that says what it is:
//
//	0x01 <range-id:8> <suffix>   range-local Raft state (see the suffixes below)
//	0x02 <user key>              user data: a ValueRecord
//	0x03 <enc(anchor key)> <txn-id>  a transaction record (TxnRecord)
//
// Range-local keys sort by range, so a range's Raft log is one contiguous
// span that can be deleted with a single range tombstone. User keys are not
// prefixed by range, so a range's data is the contiguous span of its
// descriptor's [start, end) and a split moves no data. Transaction records
// are addressed by their anchor (primary) key, escaped with an
// order-preserving, prefix-free encoding, so a range also owns the record
// span [0x03 enc(start), 0x03 enc(end)) and records move with their key.
const (
	prefixRangeLocal byte = 0x01
	prefixUser       byte = 0x02
	prefixUserEnd    byte = 0x03 // exclusive upper bound of all user keys
	prefixTxnRecord  byte = 0x03
	prefixTxnEnd     byte = 0x04

	suffixHardState byte = 'h'
	suffixLog       byte = 'l'
	suffixTruncated byte = 't'
	suffixApplied   byte = 'a'
	suffixDesc      byte = 'd'
	suffixTombstone byte = 'z'
)

func rangeLocalPrefix(rangeID uint64) []byte {
	k := make([]byte, 9, 9+9)
	k[0] = prefixRangeLocal
	binary.BigEndian.PutUint64(k[1:], rangeID)
	return k
}

func rangeLocalKey(rangeID uint64, suffix byte) []byte {
	return appendRangeLocalKey(make([]byte, 0, 9+9), rangeID, suffix)
}

// appendRangeLocalKey appends rangeLocalKey(rangeID, suffix) to dst.
func appendRangeLocalKey(dst []byte, rangeID uint64, suffix byte) []byte {
	dst = append(dst, prefixRangeLocal)
	dst = binary.BigEndian.AppendUint64(dst, rangeID)
	return append(dst, suffix)
}

// HardStateKey, AppliedStateKey, TruncatedStateKey and DescriptorKey are the
// engine keys of a range's Raft and replica state.
func HardStateKey(rangeID uint64) []byte      { return rangeLocalKey(rangeID, suffixHardState) }
func AppliedStateKey(rangeID uint64) []byte   { return rangeLocalKey(rangeID, suffixApplied) }
func TruncatedStateKey(rangeID uint64) []byte { return rangeLocalKey(rangeID, suffixTruncated) }
func DescriptorKey(rangeID uint64) []byte     { return rangeLocalKey(rangeID, suffixDesc) }

// TombstoneKey is the engine key of the highest replica ID of a range that
// this node has destroyed (see DestroyData).
func TombstoneKey(rangeID uint64) []byte { return rangeLocalKey(rangeID, suffixTombstone) }

// LogKey is the engine key of the Raft log entry at index.
func LogKey(rangeID, index uint64) []byte {
	return appendLogKey(make([]byte, 0, logKeyLen), rangeID, index)
}

// logKeyLen is the length of every LogKey.
const logKeyLen = 1 + 8 + 1 + 8

// appendLogKey appends LogKey(rangeID, index) to dst.
func appendLogKey(dst []byte, rangeID, index uint64) []byte {
	return binary.BigEndian.AppendUint64(appendRangeLocalKey(dst, rangeID, suffixLog), index)
}

// logIndexFromKey decodes the index of a key made by LogKey.
func logIndexFromKey(k []byte) (uint64, error) {
	if len(k) != logKeyLen || k[0] != prefixRangeLocal || k[9] != suffixLog {
		return 0, fmt.Errorf("not a log key: %x", k)
	}
	return binary.BigEndian.Uint64(k[10:]), nil
}

// RangeLocalSpan is the span holding all of a range's local state.
func RangeLocalSpan(rangeID uint64) (start, end []byte) {
	start = rangeLocalPrefix(rangeID)
	end = rangeLocalPrefix(rangeID + 1)
	return start, end
}

// IsDescriptorKey reports whether k is a DescriptorKey and returns its range.
func IsDescriptorKey(k []byte) (uint64, bool) {
	if len(k) != 10 || k[0] != prefixRangeLocal || k[9] != suffixDesc {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[1:9]), true
}

// UserKey is the engine key of a user key.
func UserKey(key []byte) []byte {
	k := make([]byte, 0, len(key)+1)
	k = append(k, prefixUser)
	return append(k, key...)
}

// DecodeUserKey strips the user prefix from an engine key.
func DecodeUserKey(k []byte) ([]byte, error) {
	if len(k) == 0 || k[0] != prefixUser {
		return nil, fmt.Errorf("not a user key: %x", k)
	}
	return k[1:], nil
}

// UserSpan is the engine span of user keys in [start, end); an empty end is
// the end of the key space.
func UserSpan(start, end []byte) (lo, hi []byte) {
	lo = UserKey(start)
	if len(end) == 0 {
		return lo, []byte{prefixUserEnd}
	}
	return lo, UserKey(end)
}

// encodeOrdered escapes key so that the encoding sorts like the key and no
// encoding is a prefix of another: 0x00 becomes 0x00 0xFF and the key ends
// with 0x00 0x01.
func encodeOrdered(dst, key []byte) []byte {
	for _, c := range key {
		if c == 0x00 {
			dst = append(dst, 0x00, 0xFF)
		} else {
			dst = append(dst, c)
		}
	}
	return append(dst, 0x00, 0x01)
}

// TxnRecordKey is the engine key of a transaction's record.
func TxnRecordKey(anchor, txnID []byte) []byte {
	k := make([]byte, 0, 1+len(anchor)+2+len(txnID)+4)
	k = append(k, prefixTxnRecord)
	k = encodeOrdered(k, anchor)
	return append(k, txnID...)
}

// TxnRecordSpan is the engine span of the records anchored in [start, end).
func TxnRecordSpan(start, end []byte) (lo, hi []byte) {
	lo = encodeOrdered([]byte{prefixTxnRecord}, start)
	if len(end) == 0 {
		return lo, []byte{prefixTxnEnd}
	}
	return lo, encodeOrdered([]byte{prefixTxnRecord}, end)
}

// rangeSpans returns the engine spans a range owns: its user keys and its
// transaction records.
func rangeSpans(start, end []byte) [][2][]byte {
	ulo, uhi := UserSpan(start, end)
	tlo, thi := TxnRecordSpan(start, end)
	return [][2][]byte{{ulo, uhi}, {tlo, thi}}
}

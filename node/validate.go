package node

import (
	"bytes"
	"fmt"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Request validation. Every check runs before any routing or proposal, so a
// refused request changes nothing.

func (l Limits) checkKey(key []byte) error {
	if len(key) == 0 {
		return invalidf("key must not be empty")
	}
	if len(key) > l.MaxKeySize {
		return invalidf("key is %d bytes; the limit is %d", len(key), l.MaxKeySize)
	}
	return nil
}

func (l Limits) validateGet(req *pb.GetRequest) error { return l.checkKey(req.Key) }

func (l Limits) validatePut(req *pb.PutRequest) error {
	if err := l.checkKey(req.Key); err != nil {
		return err
	}
	if len(req.Value) > l.MaxValueSize {
		return invalidf("value is %d bytes; the limit is %d", len(req.Value), l.MaxValueSize)
	}
	if req.ExpectedModRevision != nil && *req.ExpectedModRevision < 0 {
		return invalidf("expected_mod_revision must not be negative, got %d", *req.ExpectedModRevision)
	}
	if req.IfAbsent && req.ExpectedValue != nil {
		return invalidf("if_absent and expected_value cannot both be set: an absent key has no value")
	}
	if req.IfAbsent && req.ExpectedModRevision != nil && *req.ExpectedModRevision != 0 {
		return invalidf("if_absent contradicts expected_mod_revision %d", *req.ExpectedModRevision)
	}
	return nil
}

func (l Limits) validateDelete(req *pb.DeleteRequest) error {
	if err := l.checkKey(req.Key); err != nil {
		return err
	}
	if req.ExpectedModRevision != nil && *req.ExpectedModRevision < 0 {
		return invalidf("expected_mod_revision must not be negative, got %d", *req.ExpectedModRevision)
	}
	return nil
}

// continuationVersion prefixes scan continuation tokens so their format can
// change later.
const continuationVersion byte = 1

func encodeContinuation(next []byte) []byte {
	return append([]byte{continuationVersion}, next...)
}

// validateScan checks a scan and returns the key to start reading at and the
// effective limit.
func (l Limits) validateScan(req *pb.ScanRequest) (from []byte, limit int, err error) {
	if len(req.Start) > l.MaxKeySize || len(req.End) > l.MaxKeySize {
		return nil, 0, invalidf("scan bounds are limited to %d bytes", l.MaxKeySize)
	}
	if len(req.End) > 0 && bytes.Compare(req.Start, req.End) >= 0 {
		return nil, 0, invalidf("scan start %q must sort before end %q", req.Start, req.End)
	}
	switch {
	case req.Limit < 0:
		return nil, 0, invalidf("limit must not be negative, got %d", req.Limit)
	case req.Limit > int64(l.MaxScanLimit):
		return nil, 0, invalidf("limit %d is over the maximum of %d", req.Limit, l.MaxScanLimit)
	case req.Limit == 0:
		limit = l.DefaultScanLimit
	default:
		limit = int(req.Limit)
	}
	from = req.Start
	if len(req.Continuation) > 0 {
		c := req.Continuation
		if c[0] != continuationVersion {
			return nil, 0, invalidf("malformed continuation token")
		}
		from = c[1:]
		if bytes.Compare(from, req.Start) < 0 || (len(req.End) > 0 && bytes.Compare(from, req.End) >= 0) {
			return nil, 0, invalidf("continuation token is outside the scan's [start, end)")
		}
	}
	return from, limit, nil
}

// validateTxn checks a transaction's size and shape.
func (l Limits) validateTxn(req *pb.TxnRequest) error {
	if n := len(req.Compare) + len(req.Success) + len(req.Failure); n > l.MaxTxnOps {
		return invalidf("transaction has %d compares and operations; the limit is %d", n, l.MaxTxnOps)
	}
	size := 0
	for i, c := range req.Compare {
		if err := l.checkKey(c.Key); err != nil {
			return invalidf("compare %d: %v", i, err)
		}
		size += len(c.Key) + len(c.Value)
	}
	for _, branch := range []struct {
		name string
		ops  []*pb.RequestOp
	}{{"success", req.Success}, {"failure", req.Failure}} {
		written := map[string]bool{}
		for i, op := range branch.ops {
			var key []byte
			switch r := op.Request.(type) {
			case *pb.RequestOp_Get:
				key = r.Get.Key
				if r.Get.Stale {
					return invalidf("%s op %d: a get inside a transaction cannot be stale", branch.name, i)
				}
			case *pb.RequestOp_Put:
				if err := l.validatePut(r.Put); err != nil {
					return invalidf("%s op %d: %v", branch.name, i, err)
				}
				if r.Put.IfAbsent || r.Put.ExpectedModRevision != nil || r.Put.ExpectedValue != nil {
					return invalidf("%s op %d: conditions on a put inside a transaction belong in its compares", branch.name, i)
				}
				key = r.Put.Key
				size += len(r.Put.Value)
			case *pb.RequestOp_Delete:
				if r.Delete.ExpectedModRevision != nil {
					return invalidf("%s op %d: conditions on a delete inside a transaction belong in its compares", branch.name, i)
				}
				key = r.Delete.Key
			default:
				return invalidf("%s op %d has no operation", branch.name, i)
			}
			if err := l.checkKey(key); err != nil {
				return invalidf("%s op %d: %v", branch.name, i, err)
			}
			size += len(key)
			if op.GetGet() == nil {
				if written[string(key)] {
					return invalidf("%s branch writes key %q twice", branch.name, key)
				}
				written[string(key)] = true
			}
		}
	}
	if size > l.MaxTxnBytes {
		return invalidf("transaction carries %d bytes of keys and values; the limit is %d", size, l.MaxTxnBytes)
	}
	return nil
}

// DefaultMaxRequestSize is the bound on one gRPC message when
// Limits.MaxRequestSize is zero.
const DefaultMaxRequestSize = maxGRPCMessage

// requestSize is the bound on one gRPC message the node receives (from
// clients and peers) or sends to its peers.
func (l Limits) requestSize() int {
	if l.MaxRequestSize > 0 {
		return l.MaxRequestSize
	}
	return DefaultMaxRequestSize
}

// minRequestSize is the smallest message bound that leaves room for what
// the other limits accept and for the node's own traffic: a transaction of
// MaxTxnBytes, and a snapshot chunk (about 1 MiB plus one engine value,
// which may hold a committed value and an intent's value of the largest
// size). requestOverhead covers message framing and the fields around keys
// and values.
func (l Limits) minRequestSize() int {
	return max(l.MaxTxnBytes, snapshotChunkBytes+2*(l.MaxKeySize+l.MaxValueSize)) + requestOverhead
}

const requestOverhead = 64 << 10

// checkRequestSize refuses a MaxRequestSize that the other limits or the
// node's own messages would exceed. It runs after setDefaults.
func (l Limits) checkRequestSize() error {
	if l.MaxRequestSize < 0 {
		return fmt.Errorf("max request size must not be negative, got %d", l.MaxRequestSize)
	}
	if size, least := l.requestSize(), l.minRequestSize(); size < least {
		return fmt.Errorf("max request size %d bytes is too small: a transaction of max txn bytes (%d), or a snapshot chunk with a key of max key size (%d) and values of max value size (%d), needs at least %d",
			size, l.MaxTxnBytes, l.MaxKeySize, l.MaxValueSize, least)
	}
	return nil
}

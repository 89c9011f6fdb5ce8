package raftrixpb

// Hand-written helpers beside the generated code: the keys a transaction
// touches, shared by the client (which routes a transaction by its smallest
// key), the node and the state machine.

import (
	"bytes"
	"slices"
)

// TxnKeys returns the distinct keys that compares and operations touch,
// sorted.
func TxnKeys(compares []*Compare, branches ...[]*RequestOp) [][]byte {
	n := len(compares)
	for _, ops := range branches {
		n += len(ops)
	}
	keys := make([][]byte, 0, n)
	for _, c := range compares {
		keys = append(keys, c.Key)
	}
	for _, ops := range branches {
		for _, op := range ops {
			keys = append(keys, OpKey(op))
		}
	}
	slices.SortFunc(keys, bytes.Compare)
	return slices.CompactFunc(keys, bytes.Equal)
}

// OpKey returns the key an operation touches (nil for an empty operation).
func OpKey(op *RequestOp) []byte {
	switch r := op.Request.(type) {
	case *RequestOp_Get:
		return r.Get.Key
	case *RequestOp_Put:
		return r.Put.Key
	case *RequestOp_Delete:
		return r.Delete.Key
	}
	return nil
}

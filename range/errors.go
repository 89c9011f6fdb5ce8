package replica

import (
	"errors"
	"fmt"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// ErrRemoved is returned by a replica that has been closed or removed.
var ErrRemoved = errors.New("replica removed")

// ErrAmbiguousResult is returned to a proposer when its replica stopped
// leading before the proposal was applied: a new leader may or may not
// commit it, so the write may or may not have happened.
var ErrAmbiguousResult = errors.New("leadership changed before the write was applied; it may or may not have been applied")

// NotLeaderError is returned when a request that needs the leader reaches
// another replica. LeaderNodeID is 0 when no leader is known (an election
// is in progress).
type NotLeaderError struct {
	RangeID         uint64
	LeaderReplicaID uint64
	LeaderNodeID    uint64
}

func (e *NotLeaderError) Error() string {
	if e.LeaderNodeID == 0 {
		return fmt.Sprintf("range %d has no leader", e.RangeID)
	}
	return fmt.Sprintf("range %d is led by node %d", e.RangeID, e.LeaderNodeID)
}

// KeyOutOfRangeError is returned when a key is not in the replica's span,
// for example because the request was routed with a stale descriptor.
type KeyOutOfRangeError struct {
	RangeID uint64
	Key     []byte
}

func (e *KeyOutOfRangeError) Error() string {
	return fmt.Sprintf("key %q is not in range %d", e.Key, e.RangeID)
}

// CompareFailedError is returned by a conditional write whose condition did
// not hold. Nothing was written.
type CompareFailedError struct {
	Reason string
}

func (e *CompareFailedError) Error() string { return "compare failed: " + e.Reason }

// WriteIntentError is returned when a write meets a key locked by a
// transaction. Nothing was written; the caller settles the intent from the
// transaction's record and retries.
type WriteIntentError struct {
	Key    []byte
	Intent *pb.Intent
}

func (e *WriteIntentError) Error() string {
	return fmt.Sprintf("key %q is locked by transaction %x", e.Key, e.Intent.TxnId)
}

var errPendingResolve = errors.New("cannot resolve intents of a pending transaction")

// DescriptorChangedError is returned when a range change was decided on a
// descriptor that has changed since.
type DescriptorChangedError struct {
	RangeID          uint64
	Expected, Actual uint64
}

func (e *DescriptorChangedError) Error() string {
	return fmt.Sprintf("range %d changed (generation %d, expected %d); decide again", e.RangeID, e.Actual, e.Expected)
}

var errPrepareAfterCommit = errors.New("prepare of a transaction that has already committed")

package replica

import (
	"bytes"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Result is the outcome of applying one command on a replica.
type Result struct {
	// KV is the key as written by a put.
	KV *pb.KeyValue
	// PrevKV is the key before the command, if it existed.
	PrevKV *pb.KeyValue
	// Deleted is true when a delete removed an existing key.
	Deleted bool
	// Err is a deterministic failure such as a failed compare.
	Err error
}

// stateMachine applies commands to an indexed batch. It must stay
// deterministic: its only inputs are the command, the batch and lastRevision.
type stateMachine struct {
	b            *pebble.Batch
	desc         *pb.RangeDescriptor
	lastRevision int64
}

// nextRevision returns the revision a write proposed at proposed gets.
func (sm *stateMachine) nextRevision(proposed int64) int64 {
	return max(proposed, sm.lastRevision+1)
}

func (sm *stateMachine) apply(cmd *pb.RaftCommand) Result {
	switch op := cmd.Op.(type) {
	case *pb.RaftCommand_Put:
		return sm.put(op.Put, cmd.Revision)
	case *pb.RaftCommand_Delete:
		return sm.delete(op.Delete, cmd.Revision)
	default:
		return Result{Err: fmt.Errorf("unknown command %T", cmd.Op)}
	}
}

func (sm *stateMachine) checkSpan(key []byte) error {
	if !ContainsKey(sm.desc, key) {
		return &KeyOutOfRangeError{RangeID: sm.desc.RangeId, Key: key}
	}
	return nil
}

func (sm *stateMachine) put(req *pb.PutRequest, proposed int64) Result {
	if err := sm.checkSpan(req.Key); err != nil {
		return Result{Err: err}
	}
	prev, err := readRecord(sm.b, req.Key)
	if err != nil {
		return Result{Err: err}
	}
	if req.IfAbsent && prev != nil {
		return Result{PrevKV: prev, Err: &CompareFailedError{Reason: "key exists"}}
	}
	if err := checkModRevision(prev, req.ExpectedModRevision); err != nil {
		return Result{PrevKV: prev, Err: err}
	}
	if req.ExpectedValue != nil && (prev == nil || !bytes.Equal(prev.Value, req.ExpectedValue)) {
		return Result{PrevKV: prev, Err: &CompareFailedError{Reason: "value differs from expected value"}}
	}
	rev := sm.nextRevision(proposed)
	rec := &pb.ValueRecord{Value: req.Value, CreateRevision: rev, ModRevision: rev, Version: 1}
	if prev != nil {
		rec.CreateRevision = prev.CreateRevision
		rec.Version = prev.Version + 1
	}
	if err := putProto(sm.b, UserKey(req.Key), rec); err != nil {
		return Result{Err: err}
	}
	sm.lastRevision = rev
	return Result{KV: recordToKV(req.Key, rec, false), PrevKV: prev}
}

func (sm *stateMachine) delete(req *pb.DeleteRequest, proposed int64) Result {
	if err := sm.checkSpan(req.Key); err != nil {
		return Result{Err: err}
	}
	prev, err := readRecord(sm.b, req.Key)
	if err != nil {
		return Result{Err: err}
	}
	if err := checkModRevision(prev, req.ExpectedModRevision); err != nil {
		return Result{PrevKV: prev, Err: err}
	}
	if prev == nil {
		return Result{}
	}
	if err := sm.b.Delete(UserKey(req.Key), nil); err != nil {
		return Result{Err: err}
	}
	sm.lastRevision = sm.nextRevision(proposed)
	return Result{PrevKV: prev, Deleted: true}
}

func checkModRevision(prev *pb.KeyValue, expected *int64) error {
	if expected == nil {
		return nil
	}
	var cur int64
	if prev != nil {
		cur = prev.ModRevision
	}
	if cur != *expected {
		return &CompareFailedError{Reason: fmt.Sprintf("mod revision is %d, expected %d", cur, *expected)}
	}
	return nil
}

// readRecord reads a user key; it returns nil if the key does not exist.
func readRecord(r pebble.Reader, key []byte) (*pb.KeyValue, error) {
	v, err := getRaw(r, UserKey(key))
	if err != nil || v == nil {
		return nil, err
	}
	rec := &pb.ValueRecord{}
	if err := proto.Unmarshal(v, rec); err != nil {
		return nil, fmt.Errorf("decode value of %q: %w", key, err)
	}
	return recordToKV(key, rec, false), nil
}

func recordToKV(key []byte, rec *pb.ValueRecord, keysOnly bool) *pb.KeyValue {
	kv := &pb.KeyValue{
		Key:            append([]byte(nil), key...),
		CreateRevision: rec.CreateRevision,
		ModRevision:    rec.ModRevision,
		Version:        rec.Version,
	}
	if !keysOnly {
		kv.Value = rec.Value
	}
	return kv
}

// ContainsKey reports whether key lies in the descriptor's span.
func ContainsKey(desc *pb.RangeDescriptor, key []byte) bool {
	if bytes.Compare(key, desc.StartKey) < 0 {
		return false
	}
	return len(desc.EndKey) == 0 || bytes.Compare(key, desc.EndKey) < 0
}

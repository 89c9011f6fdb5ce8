package replica

import (
	"bytes"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

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
	// Err is a deterministic failure such as a failed compare or a
	// *WriteIntentError.
	Err error
	// Txn is the outcome of a one-range transaction.
	Txn *pb.TxnResponse
	// Prepare is a participant's answer to a TxnPrepare.
	Prepare *pb.TxnPrepareResult
	// Record is the transaction record after a TxnEnd, TxnPush or
	// TxnHeartbeat (nil if there is none).
	Record *pb.TxnRecord
	// Resolved is set when a TxnEnd resolved its resolve_keys.
	Resolved bool
	// Left and Right are the descriptors after a split.
	Left, Right *pb.RangeDescriptor
}

// stateMachine applies commands to an indexed batch. It must stay
// deterministic: its only inputs are the command, the batch and lastRevision.
type stateMachine struct {
	b            *pebble.Batch
	records      *RecordCache // may be nil
	txnRecords   *TxnRecords  // may be nil
	desc         *pb.RangeDescriptor
	lastRevision int64
	// splits are the right-hand ranges created by this batch.
	splits []*pb.RangeDescriptor
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
	case *pb.RaftCommand_Txn:
		return sm.onePC(op.Txn.Txn, cmd.Revision)
	case *pb.RaftCommand_Prepare:
		return sm.prepare(op.Prepare)
	case *pb.RaftCommand_End:
		return sm.endTxn(op.End)
	case *pb.RaftCommand_Push:
		return sm.push(op.Push)
	case *pb.RaftCommand_Heartbeat:
		return sm.heartbeat(op.Heartbeat)
	case *pb.RaftCommand_Resolve:
		return sm.resolve(op.Resolve)
	case *pb.RaftCommand_Split:
		return sm.split(op.Split)
	case *pb.RaftCommand_DeleteRecords:
		return sm.deleteTxnRecords(op.DeleteRecords)
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
	rec, prev, err := sm.unlocked(req.Key)
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
	next, err := sm.writeCommitted(req.Key, rec, &pb.TxnWrite{Value: req.Value}, rev)
	if err != nil {
		return Result{Err: err}
	}
	sm.lastRevision = rev
	return Result{KV: recordToKV(req.Key, next, false), PrevKV: prev}
}

// unlocked reads a key a plain write is about to change: its stored record
// and committed value, or a *WriteIntentError if a transaction holds it.
func (sm *stateMachine) unlocked(key []byte) (*pb.ValueRecord, *pb.KeyValue, error) {
	if err := sm.checkSpan(key); err != nil {
		return nil, nil, err
	}
	rec, err := sm.readRecord(key)
	if err != nil {
		return nil, nil, err
	}
	if rec.Intent != nil {
		return nil, nil, &WriteIntentError{Key: key, Intent: rec.Intent}
	}
	return rec, committedKV(key, rec), nil
}

func (sm *stateMachine) delete(req *pb.DeleteRequest, proposed int64) Result {
	_, prev, err := sm.unlocked(req.Key)
	if err != nil {
		return Result{Err: err}
	}
	if err := checkModRevision(prev, req.ExpectedModRevision); err != nil {
		return Result{PrevKV: prev, Err: err}
	}
	if prev == nil {
		return Result{}
	}
	if err := sm.deleteRecord(req.Key); err != nil {
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

// readRecord reads a user key's record for a command being applied: from
// the node's record cache, else from the batch (and then caches it). The
// record is shared with the cache: the caller must not modify it.
func (sm *stateMachine) readRecord(key []byte) (*pb.ValueRecord, error) {
	if rec, ok := sm.records.Get(key); ok {
		if rec == nil {
			return &pb.ValueRecord{}, nil
		}
		return rec, nil
	}
	rec, err := readValueRecord(sm.b, key)
	if err != nil {
		return nil, err
	}
	sm.records.Put(key, rec) // an empty record: the key has none
	return rec, nil
}

// putRecord writes a user key's record into the batch and the record cache.
func (sm *stateMachine) putRecord(key []byte, rec *pb.ValueRecord) error {
	if err := putProto(sm.b, UserKey(key), rec); err != nil {
		return err
	}
	sm.records.Put(key, rec)
	return nil
}

// deleteRecord deletes a user key's record from the batch and the record
// cache.
func (sm *stateMachine) deleteRecord(key []byte) error {
	if err := sm.b.Delete(UserKey(key), nil); err != nil {
		return err
	}
	sm.records.Put(key, nil)
	return nil
}

// readValueRecord reads a user key's stored record; a missing key gives an
// empty record (mod revision 0, no intent).
func readValueRecord(r pebble.Reader, key []byte) (*pb.ValueRecord, error) {
	rec := &pb.ValueRecord{}
	if _, err := getProto(r, UserKey(key), rec); err != nil {
		return nil, fmt.Errorf("read %q: %w", key, err)
	}
	return rec, nil
}

// committedKV is the committed value in rec, or nil if the key has none.
func committedKV(key []byte, rec *pb.ValueRecord) *pb.KeyValue {
	if rec.ModRevision == 0 {
		return nil
	}
	return recordToKV(key, rec, false)
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

// readRecord reads a user key's committed value; nil if it has none.
func readRecord(r pebble.Reader, key []byte) (*pb.KeyValue, error) {
	rec, err := readValueRecord(r, key)
	if err != nil {
		return nil, err
	}
	return committedKV(key, rec), nil
}

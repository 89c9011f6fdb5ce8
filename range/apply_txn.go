package replica

import (
	"bytes"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// The transaction half of the state machine: one-range transactions, and the
// participant side of two-phase commit (prepare with intents, the record's
// compare-and-set, push, heartbeat, resolve). See package txn for the
// coordinator that drives these commands.

// PendingRevision stands for the commit revision in the responses of a
// prepare: the participant cannot know it yet, and the coordinator replaces
// it once it has chosen the revision.
const PendingRevision int64 = -1

// EvalCompare evaluates one compare against a key's committed value (nil if
// absent).
func EvalCompare(c *pb.Compare, kv *pb.KeyValue) bool {
	if c.Target == pb.Compare_VALUE {
		if kv == nil {
			return false
		}
		return cmpResult(bytes.Compare(kv.Value, c.Value), c.Result)
	}
	var have, want int64
	if kv != nil {
		switch c.Target {
		case pb.Compare_VERSION:
			have = kv.Version
		case pb.Compare_CREATE_REVISION:
			have = kv.CreateRevision
		case pb.Compare_MOD_REVISION:
			have = kv.ModRevision
		}
	}
	switch c.Target {
	case pb.Compare_VERSION:
		want = c.Version
	case pb.Compare_CREATE_REVISION:
		want = c.CreateRevision
	case pb.Compare_MOD_REVISION:
		want = c.ModRevision
	}
	switch {
	case have < want:
		return cmpResult(-1, c.Result)
	case have > want:
		return cmpResult(1, c.Result)
	}
	return cmpResult(0, c.Result)
}

func cmpResult(cmp int, r pb.Compare_Result) bool {
	switch r {
	case pb.Compare_EQUAL:
		return cmp == 0
	case pb.Compare_NOT_EQUAL:
		return cmp != 0
	case pb.Compare_LESS:
		return cmp < 0
	case pb.Compare_GREATER:
		return cmp > 0
	}
	return false
}

// branchSim runs a branch's operations over the committed values of a set
// of keys, so that a get sees an earlier put of the same branch. rev is the
// revision writes get (PendingRevision during a prepare).
type branchSim struct {
	state map[string]*pb.KeyValue // nil value: key absent
	rev   int64
	// writes is the last write of the branch to each key.
	writes map[string]*pb.TxnWrite
}

func newBranchSim(base map[string]*pb.KeyValue, rev int64) *branchSim {
	state := make(map[string]*pb.KeyValue, len(base))
	for k, v := range base {
		state[k] = v
	}
	return &branchSim{state: state, rev: rev, writes: map[string]*pb.TxnWrite{}}
}

func (s *branchSim) run(op *pb.RequestOp) *pb.ResponseOp {
	switch r := op.Request.(type) {
	case *pb.RequestOp_Get:
		kv := s.state[string(r.Get.Key)]
		return &pb.ResponseOp{Response: &pb.ResponseOp_Get{Get: &pb.GetResponse{Found: kv != nil, Kv: kv}}}
	case *pb.RequestOp_Put:
		prev := s.state[string(r.Put.Key)]
		kv := &pb.KeyValue{Key: r.Put.Key, Value: r.Put.Value, CreateRevision: s.rev, ModRevision: s.rev, Version: 1}
		if prev != nil {
			kv.CreateRevision = prev.CreateRevision
			kv.Version = prev.Version + 1
		}
		s.state[string(r.Put.Key)] = kv
		s.writes[string(r.Put.Key)] = &pb.TxnWrite{Value: r.Put.Value}
		resp := &pb.PutResponse{Kv: &pb.KeyValue{Key: kv.Key, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version}}
		if r.Put.PrevKv {
			resp.PrevKv = prev
		}
		return &pb.ResponseOp{Response: &pb.ResponseOp_Put{Put: resp}}
	case *pb.RequestOp_Delete:
		prev := s.state[string(r.Delete.Key)]
		s.state[string(r.Delete.Key)] = nil
		s.writes[string(r.Delete.Key)] = &pb.TxnWrite{Delete: true}
		resp := &pb.DeleteResponse{Deleted: prev != nil}
		if r.Delete.PrevKv {
			resp.PrevKv = prev
		}
		return &pb.ResponseOp{Response: &pb.ResponseOp_Delete{Delete: resp}}
	}
	return &pb.ResponseOp{}
}

// lockedValues reads the committed values of keys, failing with the first
// intent of another transaction it meets.
func (sm *stateMachine) lockedValues(keys [][]byte, txnID []byte) (map[string]*pb.KeyValue, map[string]*pb.ValueRecord, *WriteIntentError, error) {
	vals := make(map[string]*pb.KeyValue, len(keys))
	recs := make(map[string]*pb.ValueRecord, len(keys))
	for _, k := range keys {
		if err := sm.checkSpan(k); err != nil {
			return nil, nil, nil, err
		}
		rec, err := sm.readRecord(k)
		if err != nil {
			return nil, nil, nil, err
		}
		if rec.Intent != nil && (txnID == nil || !bytes.Equal(rec.Intent.TxnId, txnID)) {
			return nil, nil, &WriteIntentError{Key: k, Intent: rec.Intent}, nil
		}
		vals[string(k)] = committedKV(k, rec)
		recs[string(k)] = rec
	}
	return vals, recs, nil, nil
}

// onePC applies a transaction whose keys all lie in this range.
func (sm *stateMachine) onePC(txn *pb.TxnRequest, proposed int64) Result {
	keys := pb.TxnKeys(txn.Compare, txn.Success, txn.Failure)
	vals, recs, conflict, err := sm.lockedValues(keys, nil)
	if err != nil {
		return Result{Err: err}
	}
	if conflict != nil {
		return Result{Err: conflict}
	}
	succeeded := true
	for _, c := range txn.Compare {
		succeeded = succeeded && EvalCompare(c, vals[string(c.Key)])
	}
	ops := txn.Failure
	if succeeded {
		ops = txn.Success
	}
	rev := sm.nextRevision(proposed)
	sim := newBranchSim(vals, rev)
	resp := &pb.TxnResponse{Succeeded: succeeded}
	for _, op := range ops {
		resp.Responses = append(resp.Responses, sim.run(op))
	}
	if len(sim.writes) > 0 {
		for _, k := range keys {
			if w, ok := sim.writes[string(k)]; ok {
				if _, err := sm.writeCommitted(k, recs[string(k)], w, rev); err != nil {
					return Result{Err: err}
				}
			}
		}
		sm.lastRevision = rev
		resp.Revision = rev
	}
	return Result{Txn: resp}
}

// writeCommitted applies a write to a key's record at revision rev and
// clears any intent.
// It returns the record written (nil for a delete).
func (sm *stateMachine) writeCommitted(key []byte, rec *pb.ValueRecord, w *pb.TxnWrite, rev int64) (*pb.ValueRecord, error) {
	if w.Delete {
		return nil, sm.deleteRecord(key)
	}
	next := &pb.ValueRecord{Value: w.Value, CreateRevision: rev, ModRevision: rev, Version: 1}
	if rec.ModRevision != 0 {
		next.CreateRevision = rec.CreateRevision
		next.Version = rec.Version + 1
	}
	return next, sm.putRecord(key, next)
}

// prepare locks this range's keys of a transaction and evaluates its compares
// and both branches under the lock.
func (sm *stateMachine) prepare(p *pb.TxnPrepare) Result {
	var success, failure []*pb.RequestOp
	for _, o := range p.Success {
		success = append(success, o.Op)
	}
	for _, o := range p.Failure {
		failure = append(failure, o.Op)
	}
	keys := pb.TxnKeys(p.Compare, success, failure)
	vals, recs, conflict, err := sm.lockedValues(keys, p.TxnId)
	if err != nil {
		return Result{Err: err}
	}
	if conflict != nil {
		return Result{Prepare: &pb.TxnPrepareResult{Conflict: conflict.Intent, ConflictKey: conflict.Key}}
	}
	if p.WriteRecord {
		rec, err := sm.readTxnRecord(p.PrimaryKey, p.TxnId)
		if err != nil {
			return Result{Err: err}
		}
		switch {
		case rec == nil:
			rec = &pb.TxnRecord{TxnId: p.TxnId, Status: pb.TxnRecord_PENDING, Heartbeat: p.Heartbeat, Priority: p.Priority}
			if err := sm.writeTxnRecord(p.PrimaryKey, rec); err != nil {
				return Result{Err: err}
			}
		case rec.Status == pb.TxnRecord_ABORTED:
			// Someone aborted the transaction before it was prepared here.
			return Result{Prepare: &pb.TxnPrepareResult{Aborted: true}}
		case rec.Status == pb.TxnRecord_COMMITTED:
			// Only a duplicate of an earlier prepare could get here; it must
			// not lock anything again.
			return Result{Err: errPrepareAfterCommit}
		}
	}
	res := &pb.TxnPrepareResult{LastRevision: sm.lastRevision}
	for _, c := range p.Compare {
		res.CompareResults = append(res.CompareResults, EvalCompare(c, vals[string(c.Key)]))
	}
	onSuccess := newBranchSim(vals, PendingRevision)
	for _, o := range p.Success {
		res.Success = append(res.Success, &pb.IndexedResponse{Index: o.Index, Response: onSuccess.run(o.Op)})
	}
	onFailure := newBranchSim(vals, PendingRevision)
	for _, o := range p.Failure {
		res.Failure = append(res.Failure, &pb.IndexedResponse{Index: o.Index, Response: onFailure.run(o.Op)})
	}
	for _, k := range keys {
		rec := committedPart(recs[string(k)])
		rec.Intent = &pb.Intent{
			TxnId:      p.TxnId,
			PrimaryKey: p.PrimaryKey,
			OnSuccess:  onSuccess.writes[string(k)],
			OnFailure:  onFailure.writes[string(k)],
			Priority:   p.Priority,
			Timestamp:  p.Heartbeat,
		}
		if err := sm.putRecord(k, rec); err != nil {
			return Result{Err: err}
		}
	}
	return Result{Prepare: res}
}

func (sm *stateMachine) readTxnRecord(anchor, txnID []byte) (*pb.TxnRecord, error) {
	// A command routed with a stale view (the primary moved by a split) must
	// not answer from, or for, a record this range does not own.
	if err := sm.checkSpan(anchor); err != nil {
		return nil, err
	}
	key := TxnRecordKey(anchor, txnID)
	if rec, known := sm.txnRecords.Get(key); known {
		return rec, nil
	}
	rec := &pb.TxnRecord{}
	ok, err := getProto(sm.b, key, rec)
	if err != nil || !ok {
		return nil, err
	}
	return rec, nil
}

func (sm *stateMachine) writeTxnRecord(anchor []byte, rec *pb.TxnRecord) error {
	if err := sm.checkSpan(anchor); err != nil {
		return err
	}
	key := TxnRecordKey(anchor, rec.TxnId)
	if err := putProto(sm.b, key, rec); err != nil {
		return err
	}
	sm.txnRecords.set(key, rec)
	return nil
}

// deleteTxnRecord deletes a record of this range.
func (sm *stateMachine) deleteTxnRecord(anchor, txnID []byte) error {
	key := TxnRecordKey(anchor, txnID)
	if err := sm.b.Delete(key, nil); err != nil {
		return err
	}
	sm.txnRecords.delete(key)
	return nil
}

// endTxn is the commit point: the record goes from PENDING to COMMITTED or
// ABORTED exactly once. A missing record is written ABORTED, so a
// transaction that never prepared its primary can never commit later.
func (sm *stateMachine) endTxn(e *pb.TxnEnd) Result {
	rec, err := sm.readTxnRecord(e.PrimaryKey, e.TxnId)
	if err != nil {
		return Result{Err: err}
	}
	if rec == nil {
		rec = &pb.TxnRecord{TxnId: e.TxnId, Status: pb.TxnRecord_ABORTED}
	} else if rec.Status == pb.TxnRecord_PENDING {
		if e.Commit {
			rec.Status, rec.Succeeded, rec.CommitRevision = pb.TxnRecord_COMMITTED, e.Succeeded, e.CommitRevision
		} else {
			rec.Status = pb.TxnRecord_ABORTED
		}
	} else {
		return sm.endResolve(e, rec)
	}
	if err := sm.writeTxnRecord(e.PrimaryKey, rec); err != nil {
		return Result{Err: err}
	}
	return sm.endResolve(e, rec)
}

// endResolve resolves an end's resolve_keys by the record's final status,
// if they all still lie in this range (after a split some may not; the
// coordinator then resolves them on their own).
func (sm *stateMachine) endResolve(e *pb.TxnEnd, rec *pb.TxnRecord) Result {
	if len(e.ResolveKeys) == 0 {
		return Result{Record: rec}
	}
	for _, k := range e.ResolveKeys {
		if !ContainsKey(sm.desc, k) {
			return Result{Record: rec}
		}
	}
	res := sm.resolve(&pb.ResolveIntents{TxnId: e.TxnId, Record: rec, Keys: e.ResolveKeys, PrimaryKey: e.PrimaryKey})
	return Result{Record: rec, Resolved: res.Err == nil, Err: res.Err}
}

// push settles a transaction for someone who met its intent.
func (sm *stateMachine) push(p *pb.TxnPush) Result {
	rec, err := sm.readTxnRecord(p.PrimaryKey, p.TxnId)
	if err != nil {
		return Result{Err: err}
	}
	switch {
	case rec == nil && !p.Force && p.TxnTimestamp >= p.ExpireBefore:
		// Young and without a record: its coordinator may still be writing
		// it. Report it pending; write nothing.
		return Result{Record: &pb.TxnRecord{TxnId: p.TxnId, Status: pb.TxnRecord_PENDING, Heartbeat: p.TxnTimestamp}}
	case rec == nil:
		rec = &pb.TxnRecord{TxnId: p.TxnId, Status: pb.TxnRecord_ABORTED}
	case rec.Status == pb.TxnRecord_PENDING && (p.Force || rec.Heartbeat < p.ExpireBefore):
		rec.Status = pb.TxnRecord_ABORTED
	default:
		return Result{Record: rec}
	}
	if err := sm.writeTxnRecord(p.PrimaryKey, rec); err != nil {
		return Result{Err: err}
	}
	return Result{Record: rec}
}

func (sm *stateMachine) heartbeat(h *pb.TxnHeartbeat) Result {
	rec, err := sm.readTxnRecord(h.PrimaryKey, h.TxnId)
	if err != nil || rec == nil {
		return Result{Err: err}
	}
	if rec.Status == pb.TxnRecord_PENDING && h.Heartbeat > rec.Heartbeat {
		rec.Heartbeat = h.Heartbeat
		if err := sm.writeTxnRecord(h.PrimaryKey, rec); err != nil {
			return Result{Err: err}
		}
	}
	return Result{Record: rec}
}

// resolve turns a finished transaction's intents on this range into values
// (COMMITTED) or drops them (ABORTED). Intents of other transactions and
// keys already resolved are left alone, so resolving twice is harmless.
func (sm *stateMachine) resolve(r *pb.ResolveIntents) Result {
	if r.Record == nil || r.Record.Status == pb.TxnRecord_PENDING {
		return Result{Err: errPendingResolve}
	}
	for _, k := range r.Keys {
		if err := sm.checkSpan(k); err != nil {
			return Result{Err: err}
		}
		rec, err := sm.readRecord(k)
		if err != nil {
			return Result{Err: err}
		}
		if rec.Intent == nil || !bytes.Equal(rec.Intent.TxnId, r.TxnId) {
			continue
		}
		var w *pb.TxnWrite
		if r.Record.Status == pb.TxnRecord_COMMITTED {
			w = rec.Intent.OnFailure
			if r.Record.Succeeded {
				w = rec.Intent.OnSuccess
			}
		}
		switch {
		case w != nil:
			_, err = sm.writeCommitted(k, rec, w, r.Record.CommitRevision)
			sm.lastRevision = max(sm.lastRevision, r.Record.CommitRevision)
		case rec.ModRevision == 0:
			err = sm.deleteRecord(k)
		default:
			err = sm.putRecord(k, committedPart(rec))
		}
		if err != nil {
			return Result{Err: err}
		}
	}
	if r.DeleteRecord && ContainsKey(sm.desc, r.PrimaryKey) {
		if err := sm.deleteTxnRecord(r.PrimaryKey, r.TxnId); err != nil {
			return Result{Err: err}
		}
	}
	return Result{}
}

// deleteTxnRecords deletes finished transactions' records that lie in this
// range. A PENDING record is kept: only a coordinator that saw its
// transaction end and every intent resolved asks, so one would mean a
// mistake, and deleting it could let a pusher abort a live transaction.
func (sm *stateMachine) deleteTxnRecords(d *pb.DeleteTxnRecords) Result {
	for _, ref := range d.Records {
		if !ContainsKey(sm.desc, ref.PrimaryKey) {
			continue
		}
		rec, err := sm.readTxnRecord(ref.PrimaryKey, ref.TxnId)
		if err != nil {
			return Result{Err: err}
		}
		if rec == nil || rec.Status == pb.TxnRecord_PENDING {
			continue
		}
		if err := sm.deleteTxnRecord(ref.PrimaryKey, ref.TxnId); err != nil {
			return Result{Err: err}
		}
	}
	return Result{}
}

// committedPart returns a new record with rec's committed value and no
// intent. Records are shared with the record cache and never changed in
// place, so the value's bytes are shared too. (A copy by proto.Clone would
// also copy the intent that is about to be replaced: 7% of a prepare's
// apply.)
func committedPart(rec *pb.ValueRecord) *pb.ValueRecord {
	return &pb.ValueRecord{Value: rec.Value, CreateRevision: rec.CreateRevision, ModRevision: rec.ModRevision, Version: rec.Version}
}

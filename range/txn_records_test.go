package replica

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// checkTxnRecords fails t unless idx (if on) holds exactly the engine's
// transaction records.
func checkTxnRecords(t *testing.T, db *pebble.DB, idx *TxnRecords) {
	t.Helper()
	if idx == nil {
		return
	}
	want := NewTxnRecords(DefaultMaxTxnRecords)
	if err := want.Load(db); err != nil {
		t.Fatal(err)
	}
	idx.mu.Lock()
	defer idx.mu.Unlock()
	if idx.m == nil {
		t.Fatal("the record index turned itself off")
	}
	for k, rec := range want.m {
		if got, ok := idx.m[k]; !ok || !proto.Equal(got, rec) {
			t.Errorf("record %x: index %v, engine %v", k, got, rec)
		}
	}
	for k, rec := range idx.m {
		if _, ok := want.m[k]; !ok {
			t.Errorf("record %x: index %v, not in the engine", k, rec)
		}
	}
}

func TestTxnRecords(t *testing.T) {
	var none *TxnRecords
	if _, known := none.Get([]byte("k")); known {
		t.Fatal("a nil index knew a record")
	}
	none.set([]byte("k"), &pb.TxnRecord{})
	none.DropSpan(testDescriptor(1, "", ""))

	db := openTestDB(t, vfs.NewMem())
	defer db.Close()
	// Records on disk before the node opens: Load must find them.
	b := db.NewBatch()
	onDisk := &pb.TxnRecord{TxnId: []byte("t1"), Status: pb.TxnRecord_ABORTED}
	if err := putProto(b, TxnRecordKey([]byte("b"), onDisk.TxnId), onDisk); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	idx := NewTxnRecords(3)
	if _, known := idx.Get(TxnRecordKey([]byte("b"), []byte("t1"))); known {
		t.Fatal("an index knew a record before Load")
	}
	if err := idx.Load(db); err != nil {
		t.Fatal(err)
	}
	got, known := idx.Get(TxnRecordKey([]byte("b"), []byte("t1")))
	if !known || !proto.Equal(got, onDisk) {
		t.Fatalf("loaded record: %v (known %v), want %v", got, known, onDisk)
	}
	// A copy: changing it changes nothing held.
	got.Status = pb.TxnRecord_COMMITTED
	if again, _ := idx.Get(TxnRecordKey([]byte("b"), []byte("t1"))); again.Status != pb.TxnRecord_ABORTED {
		t.Fatal("changing a record read from the index changed the index")
	}
	if rec, known := idx.Get(TxnRecordKey([]byte("b"), []byte("absent"))); !known || rec != nil {
		t.Fatalf("absent record: %v, known %v; want nil, known", rec, known)
	}

	// Set and delete; DropSpan forgets only its range's records.
	idx.set(TxnRecordKey([]byte("m"), []byte("t2")), &pb.TxnRecord{TxnId: []byte("t2")})
	idx.set(TxnRecordKey([]byte("x"), []byte("t3")), &pb.TxnRecord{TxnId: []byte("t3")})
	idx.delete(TxnRecordKey([]byte("x"), []byte("t3")))
	idx.DropSpan(testDescriptor(2, "a", "c"))
	if n, on := idx.Len(); !on || n != 1 {
		t.Fatalf("after set, delete and drop: %d records (on %v), want 1", n, on)
	}
	if rec, _ := idx.Get(TxnRecordKey([]byte("m"), []byte("t2"))); rec == nil {
		t.Fatal("DropSpan of [a, c) dropped the record anchored at m")
	}

	// A snapshot of [l, z) replaces that span's records with its own.
	snap := &pb.TxnRecord{TxnId: []byte("t4"), Status: pb.TxnRecord_PENDING, Heartbeat: 7}
	val, err := proto.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	kvs := []*pb.EngineKV{{Key: UserKey([]byte("n")), Value: []byte("not a record")}, {Key: TxnRecordKey([]byte("p"), snap.TxnId), Value: val}}
	idx.ReplaceSpan([]*pb.RangeDescriptor{testDescriptor(3, "l", "z")}, kvs)
	if rec, _ := idx.Get(TxnRecordKey([]byte("m"), []byte("t2"))); rec != nil {
		t.Fatal("a snapshot of [l, z) kept the record anchored at m")
	}
	if rec, _ := idx.Get(TxnRecordKey([]byte("p"), []byte("t4"))); !proto.Equal(rec, snap) {
		t.Fatalf("record from the snapshot: %v, want %v", rec, snap)
	}

	// A record it cannot decode turns it off (the command reading that
	// record gets the error, as without the index).
	broken := NewTxnRecords(DefaultMaxTxnRecords)
	if err := broken.Load(db); err != nil {
		t.Fatal(err)
	}
	broken.ReplaceSpan(nil, []*pb.EngineKV{{Key: TxnRecordKey([]byte("p"), []byte("t5")), Value: []byte{0xff}}})
	if _, known := broken.Get(TxnRecordKey([]byte("b"), []byte("t1"))); known {
		t.Fatal("an index that met an undecodable record still answers")
	}

	// Past its bound the index turns itself off and knows nothing more.
	for i := range 3 {
		idx.set(TxnRecordKey([]byte("q"), fmt.Appendf(nil, "t%d", 10+i)), &pb.TxnRecord{})
	}
	if _, on := idx.Len(); on {
		t.Fatal("an index past its bound is still on")
	}
	if _, known := idx.Get(TxnRecordKey([]byte("p"), []byte("t4"))); known {
		t.Fatal("an index turned off still answers")
	}
}

// TestCopyTxnRecordCopiesEveryField fails when TxnRecord gains a field that
// copyTxnRecord does not copy.
func TestCopyTxnRecordCopiesEveryField(t *testing.T) {
	rec := &pb.TxnRecord{}
	m := rec.ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		var v protoreflect.Value
		switch f.Kind() {
		case protoreflect.BoolKind:
			v = protoreflect.ValueOfBool(true)
		case protoreflect.EnumKind:
			v = protoreflect.ValueOfEnum(1)
		case protoreflect.Int64Kind:
			v = protoreflect.ValueOfInt64(int64(i + 1))
		case protoreflect.BytesKind:
			v = protoreflect.ValueOfBytes([]byte("x"))
		default:
			t.Fatalf("field %s of kind %s: teach this test and copyTxnRecord about it", f.Name(), f.Kind())
		}
		m.Set(f, v)
	}
	if c := copyTxnRecord(rec); !proto.Equal(c, rec) {
		t.Fatalf("copy %v of %v", c, rec)
	}
}

// A follower that catches up by snapshot gets the range's transaction
// records in its index, and a restart loads them again.
func TestSnapshotCarriesTxnRecordsIntoTheIndex(t *testing.T) {
	g := newTxnRecordsGroup(t, Config{LogTruncateThreshold: 10}, testDescriptor(1, "k", "l"))
	g.campaign(1)
	mustApply := func(cmd *pb.RaftCommand) Result {
		t.Helper()
		res, err := g.propose(1, cmd)
		if err != nil || res.Err != nil {
			t.Fatalf("%v: %v / %v", cmd, err, res.Err)
		}
		return res
	}
	// A record every replica has: t1's prepare on its primary's range.
	mustApply(&pb.RaftCommand{Op: &pb.RaftCommand_Prepare{Prepare: &pb.TxnPrepare{
		TxnId: []byte("t1"), PrimaryKey: []byte("k1"), WriteRecord: true, Heartbeat: 1,
		Success: []*pb.IndexedOp{{Op: &pb.RequestOp{Request: &pb.RequestOp_Put{Put: &pb.PutRequest{Key: []byte("k1"), Value: []byte("v")}}}}},
	}}})

	// Replica 3 is cut off while t1 commits, t2 is aborted by a push that
	// found no record, and enough writes go by for the log to be truncated.
	g.cut[3] = true
	mustApply(&pb.RaftCommand{Op: &pb.RaftCommand_End{End: &pb.TxnEnd{TxnId: []byte("t1"), PrimaryKey: []byte("k1"), Commit: true, Succeeded: true, CommitRevision: 5, ResolveKeys: [][]byte{[]byte("k1")}}}})
	if rec := mustApply(&pb.RaftCommand{Op: &pb.RaftCommand_Push{Push: &pb.TxnPush{TxnId: []byte("t2"), PrimaryKey: []byte("k2"), Force: true}}}).Record; rec.Status != pb.TxnRecord_ABORTED {
		t.Fatalf("push of a missing record: %v", rec)
	}
	for i := range 30 {
		g.mustPut(1, fmt.Sprintf("k%03d", i+100), "v", 0)
	}
	g.cut[3] = false
	g.reps[1].Tick()
	g.pump()
	if len(g.snaps) != 1 {
		t.Fatalf("want one snapshot, got %d", len(g.snaps))
	}
	g.checkConverged(1, 2, 3)

	check := func() {
		t.Helper()
		for id := uint64(1); id <= 3; id++ {
			checkTxnRecords(t, g.dbs[id], g.txnRecords[id])
		}
		if rec, known := g.txnRecords[3].Get(TxnRecordKey([]byte("k2"), []byte("t2"))); !known || rec.GetStatus() != pb.TxnRecord_ABORTED {
			t.Fatalf("replica 3's index: t2 %v (known %v), want ABORTED", rec, known)
		}
		if rec, _ := g.txnRecords[3].Get(TxnRecordKey([]byte("k1"), []byte("t1"))); rec.GetStatus() != pb.TxnRecord_COMMITTED {
			t.Fatalf("replica 3's index: t1 %v, want COMMITTED", rec)
		}
	}
	check()
	g.restart(3, false)
	check()
}

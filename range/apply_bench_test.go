package replica

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// benchApplier applies commands to one range over an in-memory engine, one
// committed batch per command, with a record cache as the node has.
type benchApplier struct {
	b       *testing.B
	db      *pebble.DB
	records *RecordCache
	desc    *pb.RangeDescriptor
	lastRev int64
	rng     *rand.Rand
	value   []byte
}

func newBenchApplier(b *testing.B) *benchApplier {
	db := openTestDB(b, vfs.NewMem())
	b.Cleanup(func() { db.Close() })
	return &benchApplier{
		b: b, db: db, records: NewRecordCache(64 << 20), desc: testDescriptor(1, "", ""),
		rng: rand.New(rand.NewPCG(1, 2)), value: make([]byte, 256),
	}
}

// key returns one of 100,000 keys, as the bench tool's workloads use.
func (a *benchApplier) key() []byte {
	return fmt.Appendf(nil, "key%08d", a.rng.IntN(100_000))
}

func (a *benchApplier) apply(cmd *pb.RaftCommand) Result {
	batch := a.db.NewIndexedBatch()
	defer batch.Close()
	sm := &stateMachine{b: batch, records: a.records, desc: a.desc, lastRevision: a.lastRev}
	res := sm.apply(cmd)
	if res.Err != nil {
		a.b.Fatal(res.Err)
	}
	if err := batch.Commit(pebble.NoSync); err != nil {
		a.b.Fatal(err)
	}
	a.lastRev = sm.lastRevision
	return res
}

// txnID returns a fresh 16-byte transaction ID.
func (a *benchApplier) txnID() []byte {
	id := make([]byte, 16)
	binary.LittleEndian.PutUint64(id, a.rng.Uint64())
	binary.LittleEndian.PutUint64(id[8:], a.rng.Uint64())
	return id
}

// prepare is the bench tool's txn workload on one key: compare its mod
// revision; on success get and put it, on failure get it.
func (a *benchApplier) prepare(txnID, key []byte, primary bool) *pb.RaftCommand {
	modRev := a.apply(&pb.RaftCommand{Op: &pb.RaftCommand_Txn{Txn: &pb.TxnOnePC{Txn: &pb.TxnRequest{
		Success: []*pb.RequestOp{{Request: &pb.RequestOp_Get{Get: &pb.GetRequest{Key: key}}}},
	}}}}).Txn.Responses[0].GetGet().GetKv().GetModRevision()
	get := &pb.RequestOp{Request: &pb.RequestOp_Get{Get: &pb.GetRequest{Key: key}}}
	return &pb.RaftCommand{Op: &pb.RaftCommand_Prepare{Prepare: &pb.TxnPrepare{
		TxnId: txnID, PrimaryKey: key, WriteRecord: primary, Priority: 1, Heartbeat: a.lastRev + 1,
		Compare: []*pb.Compare{{Key: key, Target: pb.Compare_MOD_REVISION, Result: pb.Compare_EQUAL, ModRevision: modRev}},
		Success: []*pb.IndexedOp{{Index: 0, Op: get}, {Index: 1, Op: &pb.RequestOp{Request: &pb.RequestOp_Put{Put: &pb.PutRequest{Key: key, Value: a.value}}}}},
		Failure: []*pb.IndexedOp{{Index: 0, Op: get}},
	}}}
}

// BenchmarkApplyTxn measures what applying one range's part of a two-phase
// transaction costs the state machine (one replica): the primary's range
// (prepare with the record, the end resolving its key, the record's
// deletion) and another participant's (prepare, resolution). The compare's
// revision is read with a one-key 1PC transaction outside the timer.
//
//	go test -run '^$' -bench ApplyTxn -benchmem ./range/
func BenchmarkApplyTxn(b *testing.B) {
	b.Run("primary", func(b *testing.B) {
		a := newBenchApplier(b)
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			id, key := a.txnID(), a.key()
			prep := a.prepare(id, key, true)
			b.StartTimer()
			a.apply(prep)
			a.apply(&pb.RaftCommand{Op: &pb.RaftCommand_End{End: &pb.TxnEnd{
				TxnId: id, PrimaryKey: key, Commit: true, Succeeded: true, CommitRevision: a.lastRev + 1, ResolveKeys: [][]byte{key},
			}}})
			a.apply(&pb.RaftCommand{Op: &pb.RaftCommand_DeleteRecords{DeleteRecords: &pb.DeleteTxnRecords{
				Records: []*pb.TxnRecordRef{{PrimaryKey: key, TxnId: id}},
			}}})
		}
	})
	b.Run("participant", func(b *testing.B) {
		a := newBenchApplier(b)
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			id, key, primary := a.txnID(), a.key(), a.key()
			prep := a.prepare(id, key, false)
			prep.GetPrepare().PrimaryKey = primary
			b.StartTimer()
			a.apply(prep)
			a.apply(&pb.RaftCommand{Op: &pb.RaftCommand_Resolve{Resolve: &pb.ResolveIntents{
				TxnId: id, PrimaryKey: primary, Keys: [][]byte{key},
				Record: &pb.TxnRecord{TxnId: id, Status: pb.TxnRecord_COMMITTED, Succeeded: true, CommitRevision: a.lastRev + 1},
			}}})
		}
	})
}

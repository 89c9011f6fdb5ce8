package replica

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// TestApply walks testdata/apply/*.txt, driving the deterministic state
// machine directly. Commands:
//
//	init [start=<key>] [end=<key>]
//	    a fresh engine and a range descriptor for [start, end).
//	apply
//	<op> k=<key> [v=<value>] [rev=<n>] [if-absent] [expected-mod-rev=<n>] [expected-value=<v>]
//	...
//	    applies the ops (put or delete) in order in one batch, as one Ready's
//	    committed entries are, and commits it. Every command goes through a
//	    proto round trip first, as it would through the Raft log. Prints each
//	    result and the range's last revision.
//	get k=<key>
//	dump                    every user key in the engine with its record
//
// Every file runs twice: without a record cache and with a small one (so
// that it rotates), which must not change any result; after each batch the
// cache must agree with the engine.
func TestApply(t *testing.T) {
	forEachRecordCache(t, func(t *testing.T, cacheBytes int64) {
		datadriven.Walk(t, "testdata/apply", func(t *testing.T, path string) {
			env := &applyEnv{cacheBytes: cacheBytes}
			t.Cleanup(env.close)
			datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
				return env.handle(t, d)
			})
		})
	})
}

// forEachRecordCache runs f without a record cache and with a 2 KiB one;
// the run with the cache also has a transaction record index (TxnRecords),
// as a node does. After every commit the environment checks that both
// agree with the engine.
func forEachRecordCache(t *testing.T, f func(t *testing.T, cacheBytes int64)) {
	for _, n := range []int64{0, 2 << 10} {
		t.Run(fmt.Sprintf("record-cache=%d", n), func(t *testing.T) { f(t, n) })
	}
}

type applyEnv struct {
	db           *pebble.DB
	cacheBytes   int64
	recordCache  *RecordCache
	txnRecords   *TxnRecords // with a record cache only
	desc         *pb.RangeDescriptor
	lastRevision int64
}

// commit commits a batch the state machine applied and checks that every
// record the cache holds is what the engine holds.
func (e *applyEnv) commit(t *testing.T, b *pebble.Batch) {
	t.Helper()
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	checkRecordCache(t, e.db, e.recordCache)
	checkTxnRecords(t, e.db, e.txnRecords)
}

func (e *applyEnv) close() {
	if e.db != nil {
		e.db.Close()
	}
}

func (e *applyEnv) handle(t *testing.T, d *datadriven.TestData) string {
	if d.Cmd != "init" && e.db == nil {
		d.Fatalf(t, "%s before init", d.Cmd)
	}
	switch d.Cmd {
	case "init":
		e.close()
		start, end := "", ""
		d.MaybeScanArgs(t, "start", &start)
		d.MaybeScanArgs(t, "end", &end)
		e.db = openTestDB(t, vfs.NewMem())
		e.recordCache = NewRecordCache(e.cacheBytes)
		e.txnRecords = nil
		if e.cacheBytes > 0 {
			e.txnRecords = NewTxnRecords(DefaultMaxTxnRecords)
			if err := e.txnRecords.Load(e.db); err != nil {
				t.Fatal(err)
			}
		}
		e.desc = testDescriptor(1, start, end)
		e.lastRevision = 0
		return fmt.Sprintf("range 1 [%q, %q)", e.desc.StartKey, e.desc.EndKey)
	case "apply":
		return e.cmdApply(t, d)
	case "get":
		var k string
		d.ScanArgs(t, "k", &k)
		kv, err := readRecord(e.db, []byte(k))
		if err != nil {
			return "error: " + err.Error()
		}
		return formatKV(kv)
	case "dump":
		return e.dump(t)
	default:
		d.Fatalf(t, "unknown command %q", d.Cmd)
		return ""
	}
}

func (e *applyEnv) cmdApply(t *testing.T, d *datadriven.TestData) string {
	b := e.db.NewIndexedBatch()
	defer b.Close()
	sm := &stateMachine{b: b, records: e.recordCache, txnRecords: e.txnRecords, desc: e.desc, lastRevision: e.lastRevision}
	var out strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
		cmd := parseApplyOp(t, d, line)
		// What apply sees is what came out of the log, not the proposer's
		// struct: presence of optional fields must survive the encoding.
		data, err := proto.Marshal(cmd)
		if err != nil {
			t.Fatal(err)
		}
		logged := &pb.RaftCommand{}
		if err := proto.Unmarshal(data, logged); err != nil {
			t.Fatal(err)
		}
		res := sm.apply(logged)
		fmt.Fprintf(&out, "%s\n  %s\n", line, formatResult(res))
	}
	e.commit(t, b)
	e.lastRevision = sm.lastRevision
	fmt.Fprintf(&out, "last-revision=%d", e.lastRevision)
	return out.String()
}

// parseApplyOp parses one line of an apply command into a RaftCommand.
func parseApplyOp(t *testing.T, d *datadriven.TestData, line string) *pb.RaftCommand {
	t.Helper()
	fields := strings.Fields(line)
	if len(fields) == 0 {
		d.Fatalf(t, "empty op")
	}
	args := map[string]*string{}
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		if ok {
			args[k] = &v
		} else {
			args[k] = nil
		}
	}
	str := func(k string) string {
		v, ok := args[k]
		if !ok || v == nil {
			d.Fatalf(t, "%q: missing %s=", line, k)
		}
		return *v
	}
	num := func(k string) int64 {
		n, err := strconv.ParseInt(str(k), 10, 64)
		if err != nil {
			d.Fatalf(t, "%q: %s: %v", line, k, err)
		}
		return n
	}
	cmd := &pb.RaftCommand{}
	if _, ok := args["rev"]; ok {
		cmd.Revision = num("rev")
	}
	var expectedModRev *int64
	if _, ok := args["expected-mod-rev"]; ok {
		expectedModRev = proto.Int64(num("expected-mod-rev"))
	}
	switch fields[0] {
	case "put":
		put := &pb.PutRequest{Key: []byte(str("k")), ExpectedModRevision: expectedModRev}
		if v, ok := args["v"]; ok && v != nil {
			put.Value = []byte(*v)
		}
		_, put.IfAbsent = args["if-absent"]
		if v, ok := args["expected-value"]; ok && v != nil {
			put.ExpectedValue = []byte(*v) // "expected-value=" is a set, empty value
		}
		cmd.Op = &pb.RaftCommand_Put{Put: put}
	case "delete":
		cmd.Op = &pb.RaftCommand_Delete{Delete: &pb.DeleteRequest{Key: []byte(str("k")), ExpectedModRevision: expectedModRev}}
	default:
		d.Fatalf(t, "unknown op %q", fields[0])
	}
	return cmd
}

func (e *applyEnv) dump(t *testing.T) string {
	t.Helper()
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixUser}, UpperBound: []byte{prefixUserEnd}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []string
	for valid := it.First(); valid; valid = it.Next() {
		key, err := DecodeUserKey(it.Key())
		if err != nil {
			t.Fatal(err)
		}
		rec := &pb.ValueRecord{}
		if err := proto.Unmarshal(it.Value(), rec); err != nil {
			t.Fatal(err)
		}
		out = append(out, formatKV(recordToKV(key, rec, false)))
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		return "(empty)"
	}
	return strings.Join(out, "\n")
}

func formatKV(kv *pb.KeyValue) string {
	if kv == nil {
		return "<absent>"
	}
	return fmt.Sprintf("%s=%q create=%d mod=%d ver=%d", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version)
}

func formatResult(res Result) string {
	var parts []string
	var cmpErr *CompareFailedError
	var spanErr *KeyOutOfRangeError
	switch {
	case res.Err == nil:
		parts = append(parts, "ok")
	case errors.As(res.Err, &cmpErr):
		parts = append(parts, "CompareFailedError: "+res.Err.Error())
	case errors.As(res.Err, &spanErr):
		parts = append(parts, "KeyOutOfRangeError: "+res.Err.Error())
	default:
		parts = append(parts, fmt.Sprintf("%T: %v", res.Err, res.Err))
	}
	if res.KV != nil {
		parts = append(parts, "kv: "+formatKV(res.KV))
	}
	if res.PrevKV != nil {
		parts = append(parts, "prev: "+formatKV(res.PrevKV))
	}
	if res.Deleted {
		parts = append(parts, "deleted")
	}
	return strings.Join(parts, "; ")
}

// TestAppliedStateCopyHasEveryField guards StageApply's field-by-field copy
// of the applied state: a field added to AppliedState must be added there
// too, or it would be lost on the next apply.
func TestAppliedStateCopyHasEveryField(t *testing.T) {
	fields := (&pb.AppliedState{}).ProtoReflect().Descriptor().Fields()
	if fields.Len() != 4 {
		t.Fatalf("AppliedState has %d fields; StageApply copies 4 (index, term, last_revision, conf_state): update the copy and this test", fields.Len())
	}
}

// TestValueRecordCommittedPartHasEveryField guards committedPart: a field
// added to ValueRecord must be copied there too (all but the intent).
func TestValueRecordCommittedPartHasEveryField(t *testing.T) {
	fields := (&pb.ValueRecord{}).ProtoReflect().Descriptor().Fields()
	if fields.Len() != 5 {
		t.Fatalf("ValueRecord has %d fields; committedPart copies 4 and drops the intent: update it and this test", fields.Len())
	}
	rec := &pb.ValueRecord{Value: []byte("v"), CreateRevision: 3, ModRevision: 7, Version: 2, Intent: &pb.Intent{TxnId: []byte("t")}}
	got := committedPart(rec)
	if string(got.Value) != "v" || got.CreateRevision != 3 || got.ModRevision != 7 || got.Version != 2 || got.Intent != nil {
		t.Fatalf("committedPart = %v", got)
	}
	if rec.Intent == nil {
		t.Fatal("committedPart changed its argument")
	}
}

package replica

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// TestApplyTxn walks testdata/txn/*.txt: the transaction half of the state
// machine (records and intents), driven command by command. Every command
// goes through a proto round trip first, as it would through the Raft log,
// and is applied in its own batch. Keys and values may be Go-quoted
// ("a\x00"); transaction IDs are short names (t1) stored as their bytes.
// Commands, beside those of TestApply (init, apply, get):
//
//	desc start=<key> end=<key>
//	    replaces the range descriptor over the same engine, as a split does.
//	prepare txn=<id> primary=<key> [prio=<n>] [hb=<n>] [write-record]
//	onepc [rev=<n>]
//	<op>
//	...
//	    a TxnPrepare or TxnOnePC whose compares and branches are the ops:
//	      compare k=<key> (value|version|create|mod)=<x> [op=(=|!=|<|>)]
//	      (success|failure) put k=<key> v=<value> [prev-kv]
//	      (success|failure) get k=<key>
//	      (success|failure) delete k=<key> [prev-kv]
//	    Branch operations are indexed in the order they appear.
//	end txn=<id> primary=<key> (commit [succeeded] rev=<n> | abort)
//	push txn=<id> primary=<key> [ts=<n>] [expire-before=<n>] [force]
//	heartbeat txn=<id> primary=<key> hb=<n>
//	resolve txn=<id> primary=<key> status=(committed|aborted|pending) [succeeded] [rev=<n>] keys=(<key>, ...) [delete-record]
//	dump
//	    every user key with its committed value and intent, then every
//	    transaction record in the engine.
//	records [start=<key>] [end=<key>]
//	    the records in TxnRecordSpan(start, end), by default the span of the
//	    current descriptor.
//
// Like TestApply, every file runs without and with a record cache.
func TestApplyTxn(t *testing.T) {
	forEachRecordCache(t, func(t *testing.T, cacheBytes int64) {
		datadriven.Walk(t, "testdata/txn", func(t *testing.T, path string) {
			env := &txnEnv{applyEnv{cacheBytes: cacheBytes}}
			t.Cleanup(env.close)
			datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
				return env.handle(t, d)
			})
		})
	})
}

type txnEnv struct {
	applyEnv
}

func (e *txnEnv) handle(t *testing.T, d *datadriven.TestData) string {
	if d.Cmd != "init" && e.db == nil {
		d.Fatalf(t, "%s before init", d.Cmd)
	}
	switch d.Cmd {
	case "init", "apply", "get":
		return e.applyEnv.handle(t, d)
	case "desc":
		var start, end string
		d.ScanArgs(t, "start", &start)
		d.ScanArgs(t, "end", &end)
		e.desc = testDescriptor(1, unquoteArg(t, d, start), unquoteArg(t, d, end))
		return fmt.Sprintf("range 1 [%s, %s)", showKey(e.desc.StartKey), showKey(e.desc.EndKey))
	case "prepare":
		p := &pb.TxnPrepare{
			TxnId:       []byte(e.str(t, d, "txn")),
			PrimaryKey:  []byte(e.str(t, d, "primary")),
			WriteRecord: d.HasArg("write-record"),
		}
		d.MaybeScanArgs(t, "prio", &p.Priority)
		d.MaybeScanArgs(t, "hb", &p.Heartbeat)
		txn := parseTxnOps(t, d)
		p.Compare = txn.Compare
		for i, op := range txn.Success {
			p.Success = append(p.Success, &pb.IndexedOp{Index: int32(i), Op: op})
		}
		for i, op := range txn.Failure {
			p.Failure = append(p.Failure, &pb.IndexedOp{Index: int32(i), Op: op})
		}
		return e.run(t, &pb.RaftCommand{Op: &pb.RaftCommand_Prepare{Prepare: p}})
	case "onepc":
		cmd := &pb.RaftCommand{Op: &pb.RaftCommand_Txn{Txn: &pb.TxnOnePC{Txn: parseTxnOps(t, d)}}}
		d.MaybeScanArgs(t, "rev", &cmd.Revision)
		return e.run(t, cmd)
	case "end":
		end := &pb.TxnEnd{
			TxnId:      []byte(e.str(t, d, "txn")),
			PrimaryKey: []byte(e.str(t, d, "primary")),
			Commit:     d.HasArg("commit"),
			Succeeded:  d.HasArg("succeeded"),
		}
		if end.Commit == d.HasArg("abort") {
			d.Fatalf(t, "end needs exactly one of commit and abort")
		}
		d.MaybeScanArgs(t, "rev", &end.CommitRevision)
		end.ResolveKeys = e.keys(t, d, "resolve")
		return e.run(t, &pb.RaftCommand{Op: &pb.RaftCommand_End{End: end}})
	case "delete-records":
		// delete-records refs=(primary/txn, ...)
		del := &pb.DeleteTxnRecords{}
		for _, ref := range e.keys(t, d, "refs") {
			primary, txnID, ok := strings.Cut(string(ref), "/")
			if !ok {
				d.Fatalf(t, "ref %q is not primary/txn", ref)
			}
			del.Records = append(del.Records, &pb.TxnRecordRef{PrimaryKey: []byte(primary), TxnId: []byte(txnID)})
		}
		return e.run(t, &pb.RaftCommand{Op: &pb.RaftCommand_DeleteRecords{DeleteRecords: del}})
	case "push":
		push := &pb.TxnPush{
			TxnId:      []byte(e.str(t, d, "txn")),
			PrimaryKey: []byte(e.str(t, d, "primary")),
			Force:      d.HasArg("force"),
		}
		d.MaybeScanArgs(t, "ts", &push.TxnTimestamp)
		d.MaybeScanArgs(t, "expire-before", &push.ExpireBefore)
		return e.run(t, &pb.RaftCommand{Op: &pb.RaftCommand_Push{Push: push}})
	case "heartbeat":
		hb := &pb.TxnHeartbeat{TxnId: []byte(e.str(t, d, "txn")), PrimaryKey: []byte(e.str(t, d, "primary"))}
		d.ScanArgs(t, "hb", &hb.Heartbeat)
		return e.run(t, &pb.RaftCommand{Op: &pb.RaftCommand_Heartbeat{Heartbeat: hb}})
	case "resolve":
		r := &pb.ResolveIntents{
			TxnId:        []byte(e.str(t, d, "txn")),
			PrimaryKey:   []byte(e.str(t, d, "primary")),
			DeleteRecord: d.HasArg("delete-record"),
		}
		rec := &pb.TxnRecord{TxnId: r.TxnId, Succeeded: d.HasArg("succeeded")}
		switch status := e.str(t, d, "status"); status {
		case "committed":
			rec.Status = pb.TxnRecord_COMMITTED
		case "aborted":
			rec.Status = pb.TxnRecord_ABORTED
		case "pending":
			rec.Status = pb.TxnRecord_PENDING
		default:
			d.Fatalf(t, "unknown status %q", status)
		}
		d.MaybeScanArgs(t, "rev", &rec.CommitRevision)
		r.Record = rec
		r.Keys = e.keys(t, d, "keys")
		return e.run(t, &pb.RaftCommand{Op: &pb.RaftCommand_Resolve{Resolve: r}})
	case "dump":
		return e.dumpAll(t)
	case "records":
		start, end := string(e.desc.StartKey), string(e.desc.EndKey)
		if d.HasArg("start") {
			start = e.str(t, d, "start")
		}
		if d.HasArg("end") {
			end = e.str(t, d, "end")
		}
		lo, hi := TxnRecordSpan([]byte(start), []byte(end))
		out := e.records(t, lo, hi)
		if len(out) == 0 {
			return "(none)"
		}
		return strings.Join(out, "\n")
	default:
		d.Fatalf(t, "unknown command %q", d.Cmd)
		return ""
	}
}

// keys reads an optional list argument of (Go-quoted or plain) keys.
func (e *txnEnv) keys(t *testing.T, d *datadriven.TestData, arg string) [][]byte {
	t.Helper()
	if !d.HasArg(arg) {
		return nil
	}
	var strs []string
	d.ScanArgs(t, arg, &strs)
	out := make([][]byte, len(strs))
	for i, k := range strs {
		out[i] = []byte(unquoteArg(t, d, k))
	}
	return out
}

// str reads a required argument, unquoting a Go-quoted value.
func (e *txnEnv) str(t *testing.T, d *datadriven.TestData, key string) string {
	t.Helper()
	var v string
	d.ScanArgs(t, key, &v)
	return unquoteArg(t, d, v)
}

func unquoteArg(t *testing.T, d *datadriven.TestData, v string) string {
	t.Helper()
	if !strings.HasPrefix(v, `"`) {
		return v
	}
	u, err := strconv.Unquote(v)
	if err != nil {
		d.Fatalf(t, "unquote %s: %v", v, err)
	}
	return u
}

// run applies one command in its own batch, as one committed entry, and
// formats its result.
func (e *txnEnv) run(t *testing.T, cmd *pb.RaftCommand) string {
	t.Helper()
	data, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	logged := &pb.RaftCommand{}
	if err := proto.Unmarshal(data, logged); err != nil {
		t.Fatal(err)
	}
	b := e.db.NewIndexedBatch()
	defer b.Close()
	sm := &stateMachine{b: b, records: e.recordCache, txnRecords: e.txnRecords, desc: e.desc, lastRevision: e.lastRevision}
	res := sm.apply(logged)
	e.commit(t, b)
	out := formatTxnResult(res)
	if sm.lastRevision != e.lastRevision {
		out += fmt.Sprintf("\nlast-revision=%d", sm.lastRevision)
	}
	e.lastRevision = sm.lastRevision
	return out
}

// parseTxnOps reads the compares and branch operations of d.Input.
func parseTxnOps(t *testing.T, d *datadriven.TestData) *pb.TxnRequest {
	t.Helper()
	txn := &pb.TxnRequest{}
	for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		args := map[string]string{}
		flags := map[string]bool{}
		rest := fields[1:]
		if fields[0] != "compare" {
			if len(rest) == 0 {
				d.Fatalf(t, "%q: missing operation", line)
			}
			rest = rest[1:]
		}
		for _, f := range rest {
			if k, v, ok := strings.Cut(f, "="); ok {
				args[k] = unquoteArg(t, d, v)
			} else {
				flags[f] = true
			}
		}
		key := []byte(args["k"])
		switch fields[0] {
		case "compare":
			txn.Compare = append(txn.Compare, parseCompare(t, d, line, key, args))
		case "success", "failure":
			var op *pb.RequestOp
			switch fields[1] {
			case "put":
				op = &pb.RequestOp{Request: &pb.RequestOp_Put{Put: &pb.PutRequest{Key: key, Value: []byte(args["v"]), PrevKv: flags["prev-kv"]}}}
			case "get":
				op = &pb.RequestOp{Request: &pb.RequestOp_Get{Get: &pb.GetRequest{Key: key}}}
			case "delete":
				op = &pb.RequestOp{Request: &pb.RequestOp_Delete{Delete: &pb.DeleteRequest{Key: key, PrevKv: flags["prev-kv"]}}}
			default:
				d.Fatalf(t, "%q: unknown operation %q", line, fields[1])
			}
			if fields[0] == "success" {
				txn.Success = append(txn.Success, op)
			} else {
				txn.Failure = append(txn.Failure, op)
			}
		default:
			d.Fatalf(t, "%q: unknown line", line)
		}
	}
	return txn
}

func parseCompare(t *testing.T, d *datadriven.TestData, line string, key []byte, args map[string]string) *pb.Compare {
	t.Helper()
	c := &pb.Compare{Key: key}
	num := func(s string) int64 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			d.Fatalf(t, "%q: %v", line, err)
		}
		return n
	}
	switch {
	case hasKey(args, "value"):
		c.Target, c.Value = pb.Compare_VALUE, []byte(args["value"])
	case hasKey(args, "version"):
		c.Target, c.Version = pb.Compare_VERSION, num(args["version"])
	case hasKey(args, "create"):
		c.Target, c.CreateRevision = pb.Compare_CREATE_REVISION, num(args["create"])
	case hasKey(args, "mod"):
		c.Target, c.ModRevision = pb.Compare_MOD_REVISION, num(args["mod"])
	default:
		d.Fatalf(t, "%q: compare needs a target", line)
	}
	switch op := args["op"]; op {
	case "", "=":
		c.Result = pb.Compare_EQUAL
	case "!=":
		c.Result = pb.Compare_NOT_EQUAL
	case "<":
		c.Result = pb.Compare_LESS
	case ">":
		c.Result = pb.Compare_GREATER
	default:
		d.Fatalf(t, "%q: unknown op %q", line, op)
	}
	return c
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

// showKey prints a key bare when that is unambiguous, Go-quoted otherwise.
func showKey(k []byte) string {
	if len(k) == 0 {
		return `""`
	}
	for _, c := range k {
		if c <= ' ' || c > '~' || c == '"' || c == '=' {
			return strconv.Quote(string(k))
		}
	}
	return string(k)
}

func showKV(kv *pb.KeyValue) string {
	if kv == nil {
		return "<absent>"
	}
	return fmt.Sprintf("%s=%q create=%d mod=%d ver=%d", showKey(kv.Key), kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version)
}

func showWrite(w *pb.TxnWrite) string {
	switch {
	case w == nil:
		return "-"
	case w.Delete:
		return "delete"
	default:
		return fmt.Sprintf("put(%q)", w.Value)
	}
}

func showIntent(in *pb.Intent) string {
	return fmt.Sprintf("intent(txn=%s primary=%s prio=%d success=%s failure=%s)",
		showKey(in.TxnId), showKey(in.PrimaryKey), in.Priority, showWrite(in.OnSuccess), showWrite(in.OnFailure))
}

func showRecord(r *pb.TxnRecord) string {
	if r == nil {
		return "no record"
	}
	s := fmt.Sprintf("record txn=%s %s", showKey(r.TxnId), r.Status)
	if r.Status == pb.TxnRecord_COMMITTED {
		s += fmt.Sprintf(" succeeded=%t commit-rev=%d", r.Succeeded, r.CommitRevision)
	}
	return s + fmt.Sprintf(" hb=%d prio=%d", r.Heartbeat, r.Priority)
}

func showResponse(r *pb.ResponseOp) string {
	switch x := r.Response.(type) {
	case *pb.ResponseOp_Get:
		if !x.Get.Found {
			return "get: not found"
		}
		return "get: " + showKV(x.Get.Kv)
	case *pb.ResponseOp_Put:
		s := "put: " + showKV(x.Put.Kv)
		if x.Put.PrevKv != nil {
			s += " prev: " + showKV(x.Put.PrevKv)
		}
		return s
	case *pb.ResponseOp_Delete:
		s := fmt.Sprintf("delete: deleted=%t", x.Delete.Deleted)
		if x.Delete.PrevKv != nil {
			s += " prev: " + showKV(x.Delete.PrevKv)
		}
		return s
	}
	return "empty response"
}

func formatTxnResult(res Result) string {
	var lines []string
	var wi *WriteIntentError
	switch {
	case res.Err == nil:
		lines = append(lines, "ok")
	case errors.As(res.Err, &wi):
		lines = append(lines, fmt.Sprintf("WriteIntentError: key %s locked by %s", showKey(wi.Key), showIntent(wi.Intent)))
	default:
		lines = append(lines, fmt.Sprintf("%T: %v", res.Err, res.Err))
	}
	if res.Resolved {
		lines = append(lines, "resolved")
	}
	if p := res.Prepare; p != nil {
		switch {
		case p.Conflict != nil:
			lines = append(lines, fmt.Sprintf("conflict on %s: %s", showKey(p.ConflictKey), showIntent(p.Conflict)))
		case p.Aborted:
			lines = append(lines, "aborted")
		default:
			lines = append(lines, fmt.Sprintf("compares=%v last-revision=%d", p.CompareResults, p.LastRevision))
			for _, r := range p.Success {
				lines = append(lines, fmt.Sprintf("success[%d] %s", r.Index, showResponse(r.Response)))
			}
			for _, r := range p.Failure {
				lines = append(lines, fmt.Sprintf("failure[%d] %s", r.Index, showResponse(r.Response)))
			}
		}
	}
	if r := res.Txn; r != nil {
		lines = append(lines, fmt.Sprintf("succeeded=%t revision=%d", r.Succeeded, r.Revision))
		for i, op := range r.Responses {
			lines = append(lines, fmt.Sprintf("[%d] %s", i, showResponse(op)))
		}
	}
	if res.Record != nil {
		lines = append(lines, showRecord(res.Record))
	}
	if res.KV != nil {
		lines = append(lines, "kv: "+showKV(res.KV))
	}
	return strings.Join(lines, "\n")
}

// dumpAll prints every user key with its record, then every transaction
// record.
func (e *txnEnv) dumpAll(t *testing.T) string {
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
		line := showKey(key) + " <no value>"
		if kv := committedKV(key, rec); kv != nil {
			line = showKV(kv)
		}
		if rec.Intent != nil {
			line += " " + showIntent(rec.Intent)
		}
		out = append(out, line)
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	out = append(out, e.records(t, []byte{prefixTxnRecord}, []byte{prefixTxnEnd})...)
	if len(out) == 0 {
		return "(empty)"
	}
	return strings.Join(out, "\n")
}

// records lists the transaction records stored in [lo, hi).
func (e *txnEnv) records(t *testing.T, lo, hi []byte) []string {
	t.Helper()
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []string
	for valid := it.First(); valid; valid = it.Next() {
		anchor, txnID, err := decodeTxnRecordKey(it.Key())
		if err != nil {
			t.Fatal(err)
		}
		rec := &pb.TxnRecord{}
		if err := proto.Unmarshal(it.Value(), rec); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(rec.TxnId, txnID) {
			t.Fatalf("record under txn %q holds txn %q", txnID, rec.TxnId)
		}
		out = append(out, fmt.Sprintf("anchor=%s %s", showKey(anchor), showRecord(rec)))
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	return out
}

// decodeTxnRecordKey inverts TxnRecordKey.
func decodeTxnRecordKey(k []byte) (anchor, txnID []byte, err error) {
	if len(k) == 0 || k[0] != prefixTxnRecord {
		return nil, nil, fmt.Errorf("not a record key: %x", k)
	}
	anchor = []byte{}
	for i := 1; i+1 < len(k); i++ {
		if k[i] != 0x00 {
			anchor = append(anchor, k[i])
			continue
		}
		switch k[i+1] {
		case 0xFF:
			anchor = append(anchor, 0x00)
			i++
		case 0x01:
			return anchor, k[i+2:], nil
		default:
			return nil, nil, fmt.Errorf("bad escape in record key %x", k)
		}
	}
	return nil, nil, fmt.Errorf("unterminated record key %x", k)
}

// TestTxnRecordKeyStaysInSpan checks, for awkward anchors, split points and
// transaction IDs, that a record lies in the record span of exactly the
// range whose user span holds its anchor: records move with their key on a
// split, even when the split key is the anchor plus a zero byte.
func TestTxnRecordKeyStaysInSpan(t *testing.T) {
	keys := []string{"", "\x00", "\x00\x00", "\x00\x01", "\x01", "a", "a\x00", "a\x00\x00", "a\x00\x01", "a\x00\xff", "a\x01", "a\xff", "ab", "b", "\xff", "\xff\xff"}
	ids := [][]byte{{0x00}, {0x00, 0x00}, {0x00, 0x01}, {0x01}, {0xff}, {0xff, 0xff, 0xff}, []byte("t1"), make([]byte, 16)}
	sorted := append([]string(nil), keys...)
	sort.Strings(sorted)
	for _, anchor := range keys {
		for _, id := range ids {
			rk := TxnRecordKey([]byte(anchor), id)
			got, gotID, err := decodeTxnRecordKey(rk)
			if err != nil || string(got) != anchor || !bytes.Equal(gotID, id) {
				t.Errorf("record key of %q/%x decodes to %q/%x, %v", anchor, id, got, gotID, err)
			}
			// Every split of the key space at two of the keys: [start, end),
			// with "" as end meaning the end of the key space.
			for i, start := range sorted {
				for _, end := range append(sorted[i+1:], "") {
					desc := testDescriptor(1, start, end)
					lo, hi := TxnRecordSpan(desc.StartKey, desc.EndKey)
					inSpan := bytes.Compare(rk, lo) >= 0 && bytes.Compare(rk, hi) < 0
					if want := ContainsKey(desc, []byte(anchor)); inSpan != want {
						t.Errorf("record of %q (txn %x) in record span of [%q, %q): %t, want %t", anchor, id, start, end, inSpan, want)
					}
				}
			}
			// Records never fall into the user or range-local key space.
			if ulo, uhi := UserSpan(nil, nil); bytes.Compare(rk, ulo) >= 0 && bytes.Compare(rk, uhi) < 0 {
				t.Errorf("record key %x lies in the user span", rk)
			}
		}
	}
}

// TestTxnRecordCommandsCheckSpan: a record command (end, push, heartbeat)
// whose primary key lies outside the range must fail with a
// KeyOutOfRangeError, as it does when it would write. A record of another
// range may sit in the same engine (another local replica, possibly behind
// its leader), so answering from it, or answering "no record" for a range
// that could never hold it, is a stale or wrong read of the outcome.
func TestTxnRecordCommandsCheckSpan(t *testing.T) {
	db := openTestDB(t, vfs.NewMem())
	defer db.Close()
	apply := func(desc *pb.RangeDescriptor, cmd *pb.RaftCommand) Result {
		b := db.NewIndexedBatch()
		defer b.Close()
		sm := &stateMachine{b: b, desc: desc}
		res := sm.apply(cmd)
		if err := b.Commit(pebble.Sync); err != nil {
			t.Fatal(err)
		}
		return res
	}
	whole := testDescriptor(1, "", "")
	left := testDescriptor(1, "", "m")
	// The record of primary z is written while the range spans everything.
	res := apply(whole, &pb.RaftCommand{Op: &pb.RaftCommand_Prepare{Prepare: &pb.TxnPrepare{
		TxnId: []byte("t1"), PrimaryKey: []byte("z"), WriteRecord: true, Heartbeat: 100,
		Success: []*pb.IndexedOp{{Op: &pb.RequestOp{Request: &pb.RequestOp_Put{Put: &pb.PutRequest{Key: []byte("z"), Value: []byte("1")}}}}},
	}}})
	if res.Err != nil || res.Prepare == nil || res.Prepare.Conflict != nil {
		t.Fatalf("prepare: %+v", res)
	}
	apply(whole, &pb.RaftCommand{Op: &pb.RaftCommand_End{End: &pb.TxnEnd{TxnId: []byte("t1"), PrimaryKey: []byte("z"), Commit: true, Succeeded: true, CommitRevision: 10}}})
	// Now the range is [, m): z is not its key any more.
	var spanErr *KeyOutOfRangeError
	for _, c := range []struct {
		name string
		cmd  *pb.RaftCommand
	}{
		{"end", &pb.RaftCommand{Op: &pb.RaftCommand_End{End: &pb.TxnEnd{TxnId: []byte("t1"), PrimaryKey: []byte("z")}}}},
		{"push", &pb.RaftCommand{Op: &pb.RaftCommand_Push{Push: &pb.TxnPush{TxnId: []byte("t1"), PrimaryKey: []byte("z")}}}},
		{"heartbeat", &pb.RaftCommand{Op: &pb.RaftCommand_Heartbeat{Heartbeat: &pb.TxnHeartbeat{TxnId: []byte("t1"), PrimaryKey: []byte("z"), Heartbeat: 200}}}},
		{"push no record", &pb.RaftCommand{Op: &pb.RaftCommand_Push{Push: &pb.TxnPush{TxnId: []byte("t9"), PrimaryKey: []byte("z"), TxnTimestamp: 1000, ExpireBefore: 500}}}},
		{"end no record", &pb.RaftCommand{Op: &pb.RaftCommand_End{End: &pb.TxnEnd{TxnId: []byte("t9"), PrimaryKey: []byte("z"), Commit: true}}}},
		{"heartbeat none", &pb.RaftCommand{Op: &pb.RaftCommand_Heartbeat{Heartbeat: &pb.TxnHeartbeat{TxnId: []byte("t9"), PrimaryKey: []byte("z"), Heartbeat: 200}}}},
	} {
		if res := apply(left, c.cmd); !errors.As(res.Err, &spanErr) {
			t.Errorf("%s with primary outside the range: %s", c.name, formatTxnResult(res))
		}
	}
}

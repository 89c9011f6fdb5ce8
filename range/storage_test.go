package replica

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// TestStorage walks testdata/storage/*.txt. Each script drives one Pebble
// engine on a crashable in-memory filesystem holding the Raft state of one
// or more ranges. Commands (range= defaults to the range of the last init):
//
//	init range=<id> [start=<key>] [end=<key>]
//	    WriteInitialState with a 3-voter descriptor (synced), then LoadStorage.
//	append [range=] term=<t> from=<i> to=<j> [commit=<c>] [vote=<v>] [sync=<bool>]
//	    appendEntries for [from, to] at term t and setHardState in one batch,
//	    commit (synced unless sync=false), markAppended.
//	entries [range=] lo=<i> hi=<j> [max-size=<n>]
//	term [range=] i=<i>
//	bounds [range=]         FirstIndex and LastIndex
//	hardstate [range=]      InitialState's HardState
//	truncate [range=] to=<i> [sync=<bool>]
//	    truncateTo + commit (synced unless sync=false) + markTruncated.
//	set-applied [range=] index=<i> [last-revision=<r>]
//	    persists an AppliedState at i (as apply would) and setApplied.
//	snapshot [range=]       metadata and data of Snapshot()
//	engine-log [range=]     the log entries physically present in the engine
//	restart                 close Pebble, reopen it on the same FS, LoadStorage
//	crash                   keep only synced data (CrashClone), reopen, LoadStorage
func TestStorage(t *testing.T) {
	datadriven.Walk(t, "testdata/storage", func(t *testing.T, path string) {
		env := &storageEnv{fs: vfs.NewCrashableMem(), storages: map[uint64]*Storage{}}
		env.db = openTestDB(t, env.fs)
		t.Cleanup(func() { env.db.Close() })
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			return env.handle(t, d)
		})
	})
}

type storageEnv struct {
	fs       *vfs.MemFS
	db       *pebble.DB
	storages map[uint64]*Storage
	cur      uint64
}

func (e *storageEnv) handle(t *testing.T, d *datadriven.TestData) string {
	switch d.Cmd {
	case "init":
		return e.cmdInit(t, d)
	case "append":
		return e.cmdAppend(t, d)
	case "entries":
		return e.cmdEntries(t, d)
	case "term":
		var i uint64
		d.ScanArgs(t, "i", &i)
		term, err := e.storage(t, d).Term(i)
		if err != nil {
			return "error: " + err.Error()
		}
		return fmt.Sprintf("term=%d", term)
	case "bounds":
		return formatBounds(t, e.storage(t, d))
	case "hardstate":
		hs, _, err := e.storage(t, d).InitialState()
		if err != nil {
			return "error: " + err.Error()
		}
		return formatHardState(hs)
	case "truncate":
		return e.cmdTruncate(t, d)
	case "set-applied":
		return e.cmdSetApplied(t, d)
	case "snapshot":
		return formatSnapshot(t, e.storage(t, d))
	case "engine-log":
		return e.cmdEngineLog(t, d)
	case "restart":
		e.reopen(t, e.fs)
		return e.formatAll(t)
	case "crash":
		// The clone holds exactly what was synced; the old engine is closed
		// afterwards and writes nothing into the clone.
		crashed := e.fs.CrashClone(vfs.CrashCloneCfg{})
		e.reopen(t, crashed)
		return e.formatAll(t)
	default:
		d.Fatalf(t, "unknown command %q", d.Cmd)
		return ""
	}
}

// storage returns the Storage named by range=, or that of the last init.
func (e *storageEnv) storage(t *testing.T, d *datadriven.TestData) *Storage {
	t.Helper()
	id := e.cur
	d.MaybeScanArgs(t, "range", &id)
	s, ok := e.storages[id]
	if !ok {
		d.Fatalf(t, "range %d is not initialized", id)
	}
	return s
}

func (e *storageEnv) cmdInit(t *testing.T, d *datadriven.TestData) string {
	var id uint64
	start, end := "", ""
	d.ScanArgs(t, "range", &id)
	d.MaybeScanArgs(t, "start", &start)
	d.MaybeScanArgs(t, "end", &end)
	bootstrap(t, e.db, testDescriptor(id, start, end))
	s, err := LoadStorage(e.db, id)
	if err != nil {
		return "error: " + err.Error()
	}
	e.storages[id], e.cur = s, id
	return formatStorage(t, s)
}

func (e *storageEnv) cmdAppend(t *testing.T, d *datadriven.TestData) string {
	s := e.storage(t, d)
	var term, from, to uint64
	d.ScanArgs(t, "term", &term)
	d.ScanArgs(t, "from", &from)
	d.ScanArgs(t, "to", &to)
	hs, _, err := s.InitialState()
	if err != nil {
		t.Fatal(err)
	}
	hs.Term = max(hs.Term, term)
	d.MaybeScanArgs(t, "commit", &hs.Commit)
	d.MaybeScanArgs(t, "vote", &hs.Vote)

	var ents []raftpb.Entry
	for i := from; i <= to; i++ {
		ents = append(ents, raftpb.Entry{Index: i, Term: term, Data: []byte(fmt.Sprintf("t%d-i%d", term, i))})
	}
	b := e.db.NewBatch()
	defer b.Close()
	if err := s.appendEntries(b, ents, false); err != nil {
		return "error: " + err.Error()
	}
	if err := setHardState(b, s.rangeID, hs); err != nil {
		return "error: " + err.Error()
	}
	if err := b.Commit(commitOpt(t, d)); err != nil {
		t.Fatalf("commit: %v", err)
	}
	s.markAppended(ents, hs)
	return formatBounds(t, s)
}

func (e *storageEnv) cmdEntries(t *testing.T, d *datadriven.TestData) string {
	var lo, hi uint64
	maxSize := uint64(math.MaxUint64)
	d.ScanArgs(t, "lo", &lo)
	d.ScanArgs(t, "hi", &hi)
	d.MaybeScanArgs(t, "max-size", &maxSize)
	ents, err := e.storage(t, d).Entries(lo, hi, maxSize)
	if err != nil {
		return "error: " + err.Error()
	}
	var sb strings.Builder
	for _, ent := range ents {
		fmt.Fprintf(&sb, "%d/%d %s size=%d\n", ent.Index, ent.Term, ent.Data, ent.Size())
	}
	return sb.String()
}

func (e *storageEnv) cmdTruncate(t *testing.T, d *datadriven.TestData) string {
	s := e.storage(t, d)
	var to uint64
	d.ScanArgs(t, "to", &to)
	b := e.db.NewBatch()
	defer b.Close()
	ts, err := s.truncateTo(b, to)
	if err != nil {
		return "error: " + err.Error()
	}
	if err := b.Commit(commitOpt(t, d)); err != nil {
		t.Fatalf("commit: %v", err)
	}
	s.markTruncated(ts)
	return formatBounds(t, s)
}

func (e *storageEnv) cmdSetApplied(t *testing.T, d *datadriven.TestData) string {
	s := e.storage(t, d)
	var index uint64
	var lastRev int64
	d.ScanArgs(t, "index", &index)
	d.MaybeScanArgs(t, "last-revision", &lastRev)
	term, err := s.Term(index)
	if err != nil {
		return "error: " + err.Error()
	}
	applied := proto.Clone(s.Applied()).(*pb.AppliedState)
	applied.Index, applied.Term, applied.LastRevision = index, term, lastRev
	b := e.db.NewBatch()
	defer b.Close()
	if err := putProto(b, AppliedStateKey(s.rangeID), applied); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if err := s.setApplied(applied); err != nil {
		return "error: " + err.Error()
	}
	return fmt.Sprintf("applied=%d/%d", applied.Index, applied.Term)
}

// commitOpt is pebble.Sync unless the command says sync=false.
func commitOpt(t *testing.T, d *datadriven.TestData) *pebble.WriteOptions {
	sync := true
	d.MaybeScanArgs(t, "sync", &sync)
	if sync {
		return pebble.Sync
	}
	return pebble.NoSync
}

// cmdEngineLog lists the log keys present in the engine, bypassing the
// cached bounds, so scripts can check that deletions really happened.
func (e *storageEnv) cmdEngineLog(t *testing.T, d *datadriven.TestData) string {
	s := e.storage(t, d)
	it, err := e.db.NewIter(&pebble.IterOptions{
		LowerBound: LogKey(s.rangeID, 0),
		UpperBound: LogKey(s.rangeID, math.MaxUint64),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []string
	for valid := it.First(); valid; valid = it.Next() {
		var ent raftpb.Entry
		if err := ent.Unmarshal(it.Value()); err != nil {
			t.Fatal(err)
		}
		idx, err := logIndexFromKey(it.Key())
		if err != nil {
			t.Fatal(err)
		}
		if idx != ent.Index {
			t.Fatalf("key index %d holds entry %d", idx, ent.Index)
		}
		out = append(out, fmt.Sprintf("%d/%d", ent.Index, ent.Term))
	}
	if len(out) == 0 {
		return "(empty)"
	}
	return strings.Join(out, " ")
}

// reopen closes the engine and opens it again on fs, then reloads every
// range's Storage from what the engine holds.
func (e *storageEnv) reopen(t *testing.T, fs *vfs.MemFS) {
	t.Helper()
	if err := e.db.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	e.fs = fs
	e.db = openTestDB(t, fs)
	for id := range e.storages {
		s, err := LoadStorage(e.db, id)
		if err != nil {
			t.Fatalf("load range %d: %v", id, err)
		}
		e.storages[id] = s
	}
}

func (e *storageEnv) formatAll(t *testing.T) string {
	ids := make([]uint64, 0, len(e.storages))
	for id := range e.storages {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var parts []string
	for _, id := range ids {
		parts = append(parts, fmt.Sprintf("range %d:\n%s", id, formatStorage(t, e.storages[id])))
	}
	return strings.Join(parts, "\n")
}

func formatStorage(t *testing.T, s *Storage) string {
	t.Helper()
	hs, cs, err := s.InitialState()
	if err != nil {
		t.Fatal(err)
	}
	first, _ := s.FirstIndex()
	truncTerm, err := s.Term(first - 1)
	if err != nil {
		t.Fatalf("term of truncated index %d: %v", first-1, err)
	}
	a := s.Applied()
	return fmt.Sprintf("%s truncated=%d/%d\n%s\napplied=%d/%d last-revision=%d\nconf: voters=%v learners=%v",
		formatBounds(t, s), first-1, truncTerm, formatHardState(hs), a.Index, a.Term, a.LastRevision, cs.Voters, cs.Learners)
}

func formatBounds(t *testing.T, s *Storage) string {
	t.Helper()
	first, err := s.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err := s.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("first=%d last=%d", first, last)
}

func formatHardState(hs raftpb.HardState) string {
	return fmt.Sprintf("hardstate: term=%d vote=%d commit=%d", hs.Term, hs.Vote, hs.Commit)
}

func formatSnapshot(t *testing.T, s *Storage) string {
	t.Helper()
	snap, err := s.Snapshot()
	if err != nil {
		return "error: " + err.Error()
	}
	data := &pb.SnapshotData{}
	if err := proto.Unmarshal(snap.Data, data); err != nil {
		t.Fatalf("decode snapshot data: %v", err)
	}
	m := snap.Metadata
	desc := data.Descriptor_
	return fmt.Sprintf("index=%d term=%d voters=%v learners=%v\ndata: range=%d span=[%q, %q) last-revision=%d",
		m.Index, m.Term, m.ConfState.Voters, m.ConfState.Learners,
		desc.RangeId, desc.StartKey, desc.EndKey, data.LastRevision)
}

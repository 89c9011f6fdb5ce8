package replica

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

func TestReplicaReplicates(t *testing.T) {
	g := newTestGroup(t, Config{}, testDescriptor(1, "", ""))
	g.campaign(1)

	kv := g.mustPut(1, "a", "1", 100)
	if kv.CreateRevision != 100 || kv.ModRevision != 100 || kv.Version != 1 {
		t.Fatalf("first put: %v", kv)
	}
	kv = g.mustPut(1, "a", "2", 50) // a lagging clock: raised to 101
	if kv.CreateRevision != 100 || kv.ModRevision != 101 || kv.Version != 2 {
		t.Fatalf("overwrite: %v", kv)
	}
	g.mustPut(1, "b", "x", 200)

	// A failed condition is a result, not a proposal error, and is
	// replicated as a no-op like any other entry.
	res, err := g.propose(1, &pb.RaftCommand{Revision: 300, Op: &pb.RaftCommand_Put{Put: &pb.PutRequest{Key: []byte("a"), Value: []byte("3"), IfAbsent: true}}})
	var cmpErr *CompareFailedError
	if err != nil || !errors.As(res.Err, &cmpErr) {
		t.Fatalf("if_absent on existing key: err=%v res=%+v", err, res)
	}

	// Followers refuse proposals and name the leader.
	_, err = g.propose(2, &pb.RaftCommand{Op: &pb.RaftCommand_Put{Put: &pb.PutRequest{Key: []byte("c")}}})
	var nle *NotLeaderError
	if !errors.As(err, &nle) || nle.LeaderReplicaID != 1 || nle.LeaderNodeID != 1 {
		t.Fatalf("propose on follower: %v", err)
	}

	lead := g.reps[1].Status()
	for id := uint64(1); id <= 3; id++ {
		st := g.reps[id].Status()
		if st.Applied != lead.Commit || st.Commit != lead.Commit {
			t.Errorf("replica %d: applied=%d commit=%d, leader commit=%d", id, st.Applied, st.Commit, lead.Commit)
		}
		if got := g.get(id, "a"); string(got.GetValue()) != "2" || got.ModRevision != 101 {
			t.Errorf("replica %d: get a = %v", id, got)
		}
	}
	g.checkConverged(1, 2, 3)
	if a := g.reps[1].storage.Applied(); a.LastRevision != 200 {
		t.Errorf("last revision %d, want 200 (the failed put consumes none)", a.LastRevision)
	}

	// A linearizable read on the leader goes through ReadIndex.
	var readErr error
	g.do(func() { readErr = g.reps[1].ReadIndex(context.Background()) })
	if readErr != nil {
		t.Fatalf("read index: %v", readErr)
	}
	if err := g.reps[3].ReadIndex(context.Background()); !errors.As(err, &nle) {
		t.Fatalf("read index on follower: %v", err)
	}
}

func TestReplicaSnapshotCatchUp(t *testing.T) {
	g := newTestGroup(t, Config{LogTruncateThreshold: 10}, testDescriptor(1, "k", "l"))
	// Other ranges' data in the same engines must neither travel with the
	// snapshot nor be deleted by its installation.
	for id := uint64(1); id <= 3; id++ {
		g.putForeign(id, "a")
		g.putForeign(id, "z")
	}
	otherLog := LogKey(2, 7) // an entry of range 2's log on the same engine
	if err := g.dbs[3].Set(otherLog, []byte("range 2"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	g.campaign(1)
	g.mustPut(1, "k000", "v", 1)
	g.checkConverged(1, 2, 3)
	behind := g.reps[3].Status()

	// Replica 3 is cut off while 50 writes commit on the other two.
	g.cut[3] = true
	for i := 1; i <= 50; i++ {
		g.mustPut(1, fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i), int64(i+1))
	}
	g.mustPut(1, "k000", "overwritten", 0)
	if g.dropped == 0 {
		t.Fatal("no message to replica 3 was dropped")
	}
	g.checkConverged(1, 2)
	lead := g.reps[1].Status()
	if st := g.reps[3].Status(); st.Applied != behind.Applied || st.LastIndex != behind.LastIndex {
		t.Fatalf("cut-off replica moved: %+v, was %+v", st, behind)
	}
	if lead.FirstIndex <= behind.LastIndex+1 {
		t.Fatalf("leader log not truncated past the follower: leader first=%d, follower last=%d", lead.FirstIndex, behind.LastIndex)
	}
	if _, err := g.reps[1].storage.Entries(behind.LastIndex+1, lead.LastIndex+1, 1<<20); err == nil {
		t.Fatal("leader still holds the entries the follower needs")
	}
	if len(g.snaps) != 0 {
		t.Fatalf("snapshot sent to a cut-off replica: %+v", g.snaps)
	}

	// Reconnect: the next heartbeat finds replica 3 behind the log.
	g.cut[3] = false
	g.reps[1].Tick()
	g.pump()

	if len(g.snaps) != 1 {
		t.Fatalf("want exactly one snapshot, got %d", len(g.snaps))
	}
	snap := g.snaps[0]
	if snap.from != 1 || snap.to != 3 || snap.meta.Index < lead.FirstIndex {
		t.Fatalf("snapshot from %d to %d at %d, leader first index %d", snap.from, snap.to, snap.meta.Index, lead.FirstIndex)
	}
	// No write happened since, so the streamed data is the leader's data
	// in the range's span.
	leaderEngine := g.engineUserKVs(1, g.desc)
	if len(snap.kvs) != 51 || len(snap.kvs) != len(leaderEngine) {
		t.Fatalf("snapshot has %d keys, leader %d", len(snap.kvs), len(leaderEngine))
	}
	for i := range snap.kvs {
		if !proto.Equal(snap.kvs[i], leaderEngine[i]) {
			t.Fatalf("snapshot key %d: %v, leader %v", i, snap.kvs[i], leaderEngine[i])
		}
	}

	// Replica 3 installed it: same state, a log that starts after it.
	g.checkConverged(1, 2, 3)
	st := g.reps[3].Status()
	if st.FirstIndex != snap.meta.Index+1 || st.Applied != lead.Commit || st.LastIndex != lead.LastIndex {
		t.Fatalf("follower after snapshot: %+v, snapshot at %d, leader %+v", st, snap.meta.Index, lead)
	}
	if term, err := g.reps[3].storage.Term(snap.meta.Index); err != nil || term != snap.meta.Term {
		t.Fatalf("term at snapshot index: %d, %v; want %d", term, err, snap.meta.Term)
	}

	// The installed state is durable: a restart of replica 3 finds it.
	g.restart(3, false)
	if got := g.reps[3].Status(); got.FirstIndex != st.FirstIndex || got.LastIndex != st.LastIndex || got.Applied != st.Applied {
		t.Fatalf("after restart: %+v, before %+v", got, st)
	}
	g.checkConverged(1, 2, 3)

	all := testDescriptor(1, "", "")
	if got := g.engineUserKVs(3, all); len(got) != 51+2 || string(got[0].Key) != string(UserKey([]byte("a"))) || string(got[52].Key) != string(UserKey([]byte("z"))) {
		t.Fatalf("replica 3's engine after the snapshot: %d keys, first %q", len(got), got[0].Key)
	}
	if v, err := getRaw(g.dbs[3], otherLog); err != nil || string(v) != "range 2" {
		t.Fatalf("range 2's log entry after range 1's snapshot: %q, %v", v, err)
	}

	// And it keeps replicating normally.
	g.mustPut(1, "k-after", "snapshot", 0)
	g.checkConverged(1, 2, 3)
	if got := g.get(3, "k-after"); string(got.GetValue()) != "snapshot" {
		t.Fatalf("replica 3: get k-after = %v", got)
	}
}

// A snapshot that Raft rejects (here an older one from the same leader,
// arriving late) must not disturb a newer snapshot that Raft has accepted
// but not yet handed out in a Ready. In the node both arrive on gRPC
// goroutines, concurrently with the scheduler, so the order is not fixed.
func TestReplicaStaleSnapshotWhilePending(t *testing.T) {
	g := newTestGroup(t, Config{LogTruncateThreshold: 10}, testDescriptor(1, "", ""))
	g.campaign(1)
	g.cut[3] = true
	for i := 0; i < 20; i++ {
		g.mustPut(1, fmt.Sprintf("k%03d", i), "old", 0)
	}
	stale, staleKVs := g.captureSnapshot(1, 3)
	for i := 0; i < 20; i++ {
		g.mustPut(1, fmt.Sprintf("k%03d", i), "new", 0)
	}
	if st := g.reps[1].Status(); st.FirstIndex <= stale.Snapshot.Metadata.Index {
		t.Fatalf("leader log not truncated past the stale snapshot: %+v", st)
	}

	g.afterSnapshot = func(to uint64) {
		g.afterSnapshot = nil
		if err := g.reps[to].ReceiveSnapshot(stale, staleKVs); err != nil {
			t.Fatalf("stale snapshot: %v", err)
		}
	}
	g.cut[3] = false
	g.reps[1].Tick()
	g.pump()
	if len(g.snaps) != 1 || g.snaps[0].meta.Index <= stale.Snapshot.Metadata.Index {
		t.Fatalf("want one fresh snapshot, got %+v", g.snaps)
	}
	g.checkConverged(1, 2, 3)
	if got := g.get(3, "k000"); string(got.GetValue()) != "new" {
		t.Fatalf("replica 3: k000 = %v", got)
	}
}

// Reads see only the range's span of a shared engine, however wide the
// request.
func TestReplicaReads(t *testing.T) {
	g := newTestGroup(t, Config{}, testDescriptor(1, "b", "m"))
	for _, k := range []string{"a", "m", "z"} {
		g.putForeign(1, k)
	}
	g.campaign(1)
	for i, k := range []string{"b", "c", "d", "e", "l"} {
		g.mustPut(1, k, "v"+k, int64(10+i))
	}

	for _, k := range []string{"a", "m", "z"} {
		var oor *KeyOutOfRangeError
		if _, _, err := g.reps[1].Get([]byte(k)); !errors.As(err, &oor) {
			t.Errorf("get %q outside the span: %v", k, err)
		}
	}
	if kv := g.get(1, "c"); string(kv.GetValue()) != "vc" || kv.ModRevision != 11 {
		t.Errorf("get c = %v", kv)
	}
	if kv := g.get(1, "cc"); kv != nil {
		t.Errorf("get of a missing key = %v", kv)
	}

	for _, tc := range []struct {
		start, end string
		limit      int
		want       string
		more       bool
	}{
		{"", "", 100, "b c d e l", false},
		{"a", "zz", 100, "b c d e l", false},
		{"c", "e", 100, "c d", false},
		{"c", "", 100, "c d e l", false},
		{"", "", 2, "b c", true},
		{"", "", 5, "b c d e l", false},
		{"d", "", 1, "d", true},
		{"x", "", 10, "", false}, // starts after the span
		{"", "a", 10, "", false}, // ends before the span
	} {
		name := fmt.Sprintf("scan [%q,%q) limit %d", tc.start, tc.end, tc.limit)
		res, err := g.reps[1].Scan(nilIfEmpty(tc.start), nilIfEmpty(tc.end), tc.limit, false)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		var keys []string
		for _, kv := range res.KVs {
			keys = append(keys, string(kv.Key))
			if string(kv.Value) != "v"+string(kv.Key) {
				t.Errorf("%s: %s has value %q", name, kv.Key, kv.Value)
			}
		}
		if got := strings.Join(keys, " "); got != tc.want || res.More != tc.more {
			t.Errorf("%s = %q more=%v, want %q more=%v", name, got, res.More, tc.want, tc.more)
		}
	}

	res, err := g.reps[1].Scan(nil, nil, 100, true)
	if err != nil || len(res.KVs) != 5 {
		t.Fatalf("keys-only scan: %v, %v", res, err)
	}
	for _, kv := range res.KVs {
		if kv.Value != nil || kv.ModRevision == 0 {
			t.Errorf("keys-only scan returned %v", kv)
		}
	}
}

// Every acknowledged write survives a crash of all replicas that loses each
// byte not synced: apply batches are not synced, so the restarted replicas
// replay them from the synced log, and a truncation is never kept without
// the applies before it.
func TestReplicaCrashRestart(t *testing.T) {
	g := newTestGroup(t, Config{LogTruncateThreshold: 10}, testDescriptor(1, "", ""))
	g.campaign(1)
	want := map[string]*pb.KeyValue{}
	for i := 0; i < 30; i++ {
		k := fmt.Sprintf("k%02d", i%12) // overwrites, so replay order matters
		want[k] = g.mustPut(1, k, fmt.Sprintf("v%d", i), int64(100+i))
	}
	before := map[uint64]Status{}
	for id := uint64(1); id <= 3; id++ {
		before[id] = g.reps[id].Status()
		if before[id].FirstIndex <= 6 {
			t.Fatalf("replica %d: log never truncated: %+v", id, before[id])
		}
	}

	replayed := false
	for id := uint64(1); id <= 3; id++ {
		g.restart(id, true)
		st := g.reps[id].Status()
		if st.Applied < st.FirstIndex-1 {
			t.Fatalf("replica %d after crash: applied %d below the truncated index %d", id, st.Applied, st.FirstIndex-1)
		}
		// The log is synced; the commit index is not (a HardState that only
		// moves it is not even written): it restarts at least at the
		// applied index, and the leader brings it up again.
		if st.LastIndex != before[id].LastIndex || st.Term != before[id].Term || st.Commit < st.Applied || st.Commit > before[id].Commit {
			t.Fatalf("replica %d lost synced raft state: %+v, before %+v", id, st, before[id])
		}
		replayed = replayed || st.Applied < before[id].Applied
	}
	if !replayed {
		t.Fatal("no replica lost an unsynced apply; the test does not exercise replay")
	}

	g.campaign(2)
	g.mustPut(2, "after", "crash", 0)
	g.checkConverged(1, 2, 3)
	for id := uint64(1); id <= 3; id++ {
		for k, kv := range want {
			if got := g.get(id, k); !proto.Equal(got, kv) {
				t.Errorf("replica %d: %s = %v, acknowledged %v", id, k, got, kv)
			}
		}
	}
	if got := g.get(1, "after"); got.ModRevision != 130 {
		t.Errorf("revision after replay: %v, want 130 (last revision 129 must survive)", got)
	}
}

// A leader cut off from its followers keeps an uncommitted entry; the new
// leader commits a different entry at the same index, and when the old
// leader returns, its log suffix is overwritten in the engine. The stranded
// proposal is never applied, and its caller hears so as soon as the old
// leader learns it lost leadership: the outcome is ambiguous.
func TestReplicaOverwritesUncommittedTail(t *testing.T) {
	g := newTestGroup(t, Config{}, testDescriptor(1, "", ""))
	g.campaign(1)
	g.mustPut(1, "x", "1", 10)

	g.cut[1] = true
	var lostRes Result
	var lostErr error
	lost := g.start(func() {
		lostRes, lostErr = g.reps[1].Propose(context.Background(), &pb.RaftCommand{Revision: 20, Op: &pb.RaftCommand_Put{Put: &pb.PutRequest{Key: []byte("lost"), Value: []byte("1")}}})
	})
	g.pump()
	old := g.reps[1].Status()
	if old.LastIndex != old.Commit+1 {
		t.Fatalf("old leader: want one uncommitted entry, got %+v", old)
	}
	select {
	case <-lost:
		t.Fatalf("proposal returned while its replica still leads: %+v, %v", lostRes, lostErr)
	default:
	}
	if tail, err := g.reps[1].storage.Entries(old.LastIndex, old.LastIndex+1, 1<<20); err != nil || tail[0].Term != old.Term || len(tail[0].Data) == 0 {
		t.Fatalf("old leader's uncommitted tail: %v, %v", tail, err)
	}

	// Replica 2 takes over, as after a leader transfer (a plain election
	// would be refused: replica 3 still heard from its leader recently).
	if err := g.reps[2].Step(raftpb.Message{Type: raftpb.MsgTimeoutNow, From: 1, To: 2, Term: old.Term}); err != nil {
		t.Fatal(err)
	}
	g.pump()
	if !g.reps[2].IsLeader() {
		t.Fatalf("replica 2 not leader: %+v", g.reps[2].Status())
	}
	g.mustPut(2, "y", "2", 30)
	newLead := g.reps[2].Status()
	if newLead.Commit <= old.LastIndex {
		t.Fatalf("new leader has not committed past the old tail: %+v", newLead)
	}

	g.cut[1] = false
	g.reps[2].Tick() // a heartbeat tells replica 1 about the new term
	g.pump()
	g.checkConverged(1, 2, 3)
	if st := g.reps[1].Status(); st.LastIndex != newLead.LastIndex || st.RaftState != "StateFollower" {
		t.Fatalf("old leader after rejoining: %+v, new leader %+v", st, newLead)
	}
	// The engine holds the new leader's entries, not the old tail.
	for _, id := range []uint64{1, 3} {
		got, err := g.reps[id].storage.Entries(old.LastIndex, newLead.LastIndex+1, 1<<20)
		if err != nil {
			t.Fatalf("replica %d: entries: %v", id, err)
		}
		want, err := g.reps[2].storage.Entries(old.LastIndex, newLead.LastIndex+1, 1<<20)
		if err != nil {
			t.Fatalf("replica 2: entries: %v", err)
		}
		if len(got) != len(want) {
			t.Fatalf("replica %d: %d entries, leader %d", id, len(got), len(want))
		}
		for i := range got {
			if got[i].Index != want[i].Index || got[i].Term != want[i].Term || string(got[i].Data) != string(want[i].Data) {
				t.Fatalf("replica %d: entry %d/%d differs from leader's %d/%d", id, got[i].Index, got[i].Term, want[i].Index, want[i].Term)
			}
		}
	}
	for id := uint64(1); id <= 3; id++ {
		if kv := g.get(id, "lost"); kv != nil {
			t.Errorf("replica %d applied the overwritten entry: %v", id, kv)
		}
	}

	select {
	case <-lost:
	case <-time.After(waitTimeout):
		t.Fatal("stranded proposal not answered after its replica lost leadership")
	}
	if lostErr != nil || !errors.Is(lostRes.Err, ErrAmbiguousResult) {
		t.Fatalf("stranded proposal: %+v, %v; want ErrAmbiguousResult", lostRes, lostErr)
	}
}

// TestTruncateAfterDestroyIsANoOp: the node may close and destroy a replica
// removed from its range while a scheduler round is still applying its
// entries; the round's log truncation then finds the log gone and must do
// nothing, not fail (a failed truncation stops the node). Found by the
// nemesis: "requested index is unavailable due to compaction".
func TestTruncateAfterDestroyIsANoOp(t *testing.T) {
	g := newTestGroup(t, Config{}, testDescriptor(1, "", ""))
	g.campaign(1)
	for i := 0; i < 30; i++ {
		g.mustPut(1, fmt.Sprint("k", i), "v", int64(i+1))
	}
	r := g.reps[1]
	desc := r.Descriptor()
	r.Close()
	b := g.dbs[1].NewBatch()
	if err := DestroyData(b, desc, r.ReplicaID()); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	// The round goes on with what it knew: a log long enough to truncate,
	// none of it cached any more.
	r.cfg.LogTruncateThreshold = 10
	r.storage.mu.Lock()
	r.storage.mu.cache.dropTo(r.storage.mu.lastIndex)
	r.storage.mu.Unlock()
	tb := g.dbs[1].NewBatch()
	defer tb.Close()
	if err := r.stageTruncation(tb, r.storage.Applied().Index); err != nil {
		t.Fatalf("truncating a destroyed replica's log: %v", err)
	}
	if !tb.Empty() {
		t.Fatal("truncating a destroyed replica's log wrote to the batch")
	}
}

// TestReadyWithoutStateChangeNeedsNoSync: a follower's round that only
// answers a heartbeat changes no hard state and appends nothing, so its
// batch needs no sync; a round that appends an entry does.
func TestReadyWithoutStateChangeNeedsNoSync(t *testing.T) {
	g := newTestGroup(t, Config{}, testDescriptor(1, "", ""))
	g.campaign(1)
	g.mustPut(1, "k", "v", 0)
	g.checkConverged(1, 2, 3)

	persist := func(id uint64) (Ready, bool) {
		t.Helper()
		rd, ok := g.reps[id].Ready()
		if !ok {
			t.Fatalf("replica %d has no Ready", id)
		}
		g.queue = append(g.queue, rd.Messages...)
		remote, mustSync, err := persistAppend(g.dbs[id], g.reps[id], rd)
		if err != nil {
			t.Fatal(err)
		}
		g.queue = append(g.queue, remote...)
		if _, err := g.reps[id].Apply(rd.Apply); err != nil {
			t.Fatal(err)
		}
		return rd, mustSync
	}

	// A heartbeat from the leader: follower 2 only answers it.
	for _, m := range g.reps[1].Tick() {
		if m.To == 2 && m.Type == raftpb.MsgHeartbeat {
			if err := g.reps[2].Step(m); err != nil {
				t.Fatal(err)
			}
		}
	}
	rd, mustSync := persist(2)
	if rd.Append != nil || len(rd.Messages) == 0 {
		t.Fatalf("want a Ready with only messages, got append %+v, %d messages", rd.Append, len(rd.Messages))
	}
	if mustSync {
		t.Fatal("a Ready that only answers a heartbeat must not need a sync")
	}

	// A proposal on the leader: its Ready appends the entry and must sync.
	data, err := proto.Marshal(&pb.RaftCommand{Op: &pb.RaftCommand_Put{Put: &pb.PutRequest{Key: []byte("k2"), Value: []byte("v")}}})
	if err != nil {
		t.Fatal(err)
	}
	g.reps[1].mu.Lock()
	err = g.reps[1].mu.rn.Propose(data)
	g.reps[1].mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if rd, mustSync := persist(1); rd.Append == nil || len(rd.Append.Entries) == 0 || !mustSync {
		t.Fatalf("a Ready appending %v: mustSync %v, want true", rd.Append, mustSync)
	}
	g.pump()
	g.checkConverged(1, 2, 3)
}

package replica

import (
	"context"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// testGroup is a three-replica range in memory, driven by hand the way
// node/raft_loop.go and node/transport.go drive replicas: every step runs on
// the test goroutine, in a fixed order, so runs are deterministic. Replica i
// lives on node i, each with its own Pebble on its own in-memory FS.
type testGroup struct {
	t    *testing.T
	cfg  Config // template; NodeID, DB and Notify are set per replica
	desc *pb.RangeDescriptor
	fss  map[uint64]*vfs.MemFS
	dbs  map[uint64]*pebble.DB
	reps map[uint64]*Replica

	// notified receives a token whenever a replica calls Notify: Propose and
	// ReadIndex call it once their request is inside Raft.
	notified chan struct{}
	// cut holds replicas whose messages, in and out, are dropped.
	cut map[uint64]bool
	// drop, if set, drops the messages it returns true for.
	drop    func(m raftpb.Message) bool
	queue   []raftpb.Message
	dropped int
	snaps   []deliveredSnapshot
	// afterSnapshot, if set, runs right after a follower received a
	// snapshot, before its next Ready is handled.
	afterSnapshot func(to uint64)
	// txnRecords, if not nil, gets each replica's transaction record index,
	// loaded from its engine whenever it opens, as a node does.
	txnRecords map[uint64]*TxnRecords
}

// deliveredSnapshot records a snapshot streamed to a follower.
type deliveredSnapshot struct {
	from, to uint64
	meta     raftpb.SnapshotMetadata
	kvs      []*pb.EngineKV
}

// waitTimeout bounds every wait for a goroutine the pump has already
// unblocked; reaching it is a failure, never part of the expected flow.
const waitTimeout = 10 * time.Second

func newTestGroup(t *testing.T, cfg Config, desc *pb.RangeDescriptor) *testGroup {
	t.Helper()
	return newGroup(t, cfg, desc, false)
}

// newTxnRecordsGroup is newTestGroup with a transaction record index per
// replica (g.txnRecords).
func newTxnRecordsGroup(t *testing.T, cfg Config, desc *pb.RangeDescriptor) *testGroup {
	t.Helper()
	return newGroup(t, cfg, desc, true)
}

func newGroup(t *testing.T, cfg Config, desc *pb.RangeDescriptor, withTxnRecords bool) *testGroup {
	t.Helper()
	g := &testGroup{
		t:        t,
		cfg:      cfg,
		desc:     desc,
		fss:      map[uint64]*vfs.MemFS{},
		dbs:      map[uint64]*pebble.DB{},
		reps:     map[uint64]*Replica{},
		notified: make(chan struct{}, 1),
		cut:      map[uint64]bool{},
	}
	if withTxnRecords {
		g.txnRecords = map[uint64]*TxnRecords{}
	}
	for id := uint64(1); id <= 3; id++ {
		g.fss[id] = vfs.NewCrashableMem()
		g.dbs[id] = openTestDB(t, g.fss[id])
		bootstrap(t, g.dbs[id], g.desc)
		g.open(id)
	}
	t.Cleanup(func() {
		for id := uint64(1); id <= 3; id++ {
			g.reps[id].Close()
			g.dbs[id].Close()
		}
	})
	return g
}

// open loads replica id from its engine.
func (g *testGroup) open(id uint64) {
	g.t.Helper()
	st, err := LoadStorage(g.dbs[id], g.desc.RangeId)
	if err != nil {
		g.t.Fatalf("replica %d: load storage: %v", id, err)
	}
	cfg := g.cfg
	cfg.NodeID, cfg.DB = id, g.dbs[id]
	if g.txnRecords != nil {
		idx := NewTxnRecords(DefaultMaxTxnRecords)
		if err := idx.Load(g.dbs[id]); err != nil {
			g.t.Fatalf("replica %d: load transaction records: %v", id, err)
		}
		cfg.TxnRecords, g.txnRecords[id] = idx, idx
	}
	cfg.Notify = func() {
		select {
		case g.notified <- struct{}{}:
		default:
		}
	}
	r, err := New(cfg, st)
	if err != nil {
		g.t.Fatalf("replica %d: %v", id, err)
	}
	g.reps[id] = r
}

// restart closes replica id and its engine and reopens both. With crash
// set, only what was synced survives.
func (g *testGroup) restart(id uint64, crash bool) {
	g.t.Helper()
	fs := g.fss[id]
	if crash {
		fs = fs.CrashClone(vfs.CrashCloneCfg{})
	}
	g.reps[id].Close()
	if err := g.dbs[id].Close(); err != nil {
		g.t.Fatalf("replica %d: close engine: %v", id, err)
	}
	g.fss[id] = fs
	g.dbs[id] = openTestDB(g.t, fs)
	g.open(id)
}

// putForeign writes a user key straight into replica id's engine, as
// another range sharing the node's engine would hold it.
func (g *testGroup) putForeign(id uint64, key string) {
	g.t.Helper()
	v, err := proto.Marshal(&pb.ValueRecord{Value: []byte("foreign"), CreateRevision: 1, ModRevision: 1, Version: 1})
	if err != nil {
		g.t.Fatal(err)
	}
	if err := g.dbs[id].Set(UserKey([]byte(key)), v, pebble.Sync); err != nil {
		g.t.Fatal(err)
	}
}

// handleReady runs one round of the node's Raft loop for replica id.
func (g *testGroup) handleReady(id uint64) bool {
	g.t.Helper()
	r := g.reps[id]
	rd, ok := r.Ready()
	if !ok {
		return false
	}
	g.queue = append(g.queue, rd.Messages...)
	remote, _, err := persistAppend(g.dbs[id], r, rd)
	if err != nil {
		g.t.Fatalf("replica %d: persist append: %v", id, err)
	}
	g.queue = append(g.queue, remote...)
	if _, err := r.Apply(rd.Apply); err != nil {
		g.t.Fatalf("replica %d: apply: %v", id, err)
	}
	return true
}

// deliver hands every queued message to its target.
func (g *testGroup) deliver() {
	g.t.Helper()
	msgs := g.queue
	g.queue = nil
	for _, m := range msgs {
		if g.cut[m.From] || g.cut[m.To] || (g.drop != nil && g.drop(m)) {
			g.dropped++
			continue
		}
		if m.Type == raftpb.MsgSnap {
			g.sendSnapshot(m)
			continue
		}
		if err := g.reps[m.To].Step(m); err != nil {
			g.t.Fatalf("replica %d: step %s from %d: %v", m.To, m.Type, m.From, err)
		}
	}
}

// sendSnapshot does what node/transport.go does for a MsgSnap: it sends the
// sender's current state, whatever Raft put into the message, and reports
// the outcome back to the sender's Raft.
func (g *testGroup) sendSnapshot(m raftpb.Message) {
	g.t.Helper()
	sent, kvs := g.captureSnapshot(m.From, m.To)
	m.Snapshot = sent.Snapshot
	if err := g.reps[m.To].ReceiveSnapshot(m, kvs); err != nil {
		g.t.Fatalf("replica %d: receive snapshot: %v", m.To, err)
	}
	g.snaps = append(g.snaps, deliveredSnapshot{from: m.From, to: m.To, meta: m.Snapshot.Metadata, kvs: kvs})
	g.reps[m.From].ReportSnapshot(m.To, true)
	if g.afterSnapshot != nil {
		g.afterSnapshot(m.To)
	}
}

// captureSnapshot builds the MsgSnap that replica from would stream to
// replica to right now, as node/transport.go does.
func (g *testGroup) captureSnapshot(from, to uint64) (raftpb.Message, []*pb.EngineKV) {
	g.t.Helper()
	snap, err := g.reps[from].OpenSnapshot()
	if err != nil {
		g.t.Fatalf("replica %d: open snapshot: %v", from, err)
	}
	defer snap.Close()
	var kvs []*pb.EngineKV
	err = snap.Iterate(func(k, v []byte) error {
		kvs = append(kvs, &pb.EngineKV{Key: append([]byte(nil), k...), Value: append([]byte(nil), v...)})
		return nil
	})
	if err != nil {
		g.t.Fatalf("replica %d: iterate snapshot: %v", from, err)
	}
	m := raftpb.Message{
		Type: raftpb.MsgSnap, From: from, To: to, Term: g.reps[from].Status().Term,
		Snapshot: &raftpb.Snapshot{Data: snap.Data, Metadata: snap.Meta},
	}
	return m, kvs
}

// pump runs Ready rounds and delivers messages until the group is idle.
// A leader does not broadcast a new commit index (see commit_notice.go), so
// once messages stop, a leader whose reachable followers lag its commit
// index ticks, as the node's ticker would: its heartbeat carries the index.
func (g *testGroup) pump() {
	g.t.Helper()
	for round := 0; ; round++ {
		if round > 10000 {
			g.t.Fatal("group does not settle")
		}
		busy := false
		for id := uint64(1); id <= 3; id++ {
			for g.handleReady(id) {
				busy = true
			}
		}
		if len(g.queue) == 0 && !busy && !g.heartbeatLaggingFollowers() {
			return
		}
		g.deliver()
	}
}

// heartbeatLaggingFollowers ticks the leader once if a follower that is not
// cut off has not learned its commit index, and reports whether it did.
func (g *testGroup) heartbeatLaggingFollowers() bool {
	for id, r := range g.reps {
		r.mu.Lock()
		st := r.mu.rn.Status()
		r.mu.Unlock()
		if st.RaftState != raft.StateLeader || g.cut[id] {
			continue
		}
		for fid, f := range g.reps {
			if fid == id || g.cut[fid] || st.Progress[fid].Match < st.Commit {
				continue
			}
			if f.Status().Commit < st.Commit {
				g.queue = append(g.queue, r.Tick()...)
				return true
			}
		}
	}
	return false
}

// do runs fn, which blocks until the group makes progress (Propose,
// ReadIndex), on another goroutine, pumps the group until idle, and then
// expects fn to be done.
func (g *testGroup) do(fn func()) {
	g.t.Helper()
	done := g.start(fn)
	g.pump()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		g.t.Fatal("request not complete after the group settled")
	}
}

// start runs fn on another goroutine and returns once fn has handed its
// request to Raft (Notify) or has returned. The returned channel is closed
// when fn returns.
func (g *testGroup) start(fn func()) <-chan struct{} {
	g.t.Helper()
	select { // drop a token left by an earlier ReceiveSnapshot
	case <-g.notified:
	default:
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-g.notified:
	case <-done:
	case <-time.After(waitTimeout):
		g.t.Fatal("request neither entered Raft nor returned")
	}
	return done
}

// newLedGroup returns a group whose replica 1 leads and has applied one
// put (a = 1), so that the next command is an ordinary append.
func newLedGroup(t *testing.T) *testGroup {
	t.Helper()
	g := newTestGroup(t, Config{}, testDescriptor(1, "", ""))
	g.campaign(1)
	g.mustPut(1, "a", "1", 1)
	return g
}

// startPut proposes key = value on replica id and returns once the
// proposal is with the replica; the channel closes when Propose returns,
// and a failed Propose fails the test.
func (g *testGroup) startPut(id uint64, key, value string) <-chan struct{} {
	g.t.Helper()
	return g.start(func() {
		cmd := &pb.RaftCommand{Op: &pb.RaftCommand_Put{Put: &pb.PutRequest{Key: []byte(key), Value: []byte(value)}}}
		if _, err := g.reps[id].Propose(context.Background(), cmd); err != nil {
			g.t.Error(err)
		}
	})
}

func (g *testGroup) propose(id uint64, cmd *pb.RaftCommand) (Result, error) {
	g.t.Helper()
	var res Result
	var err error
	g.do(func() { res, err = g.reps[id].Propose(context.Background(), cmd) })
	return res, err
}

func (g *testGroup) mustPut(id uint64, key, value string, rev int64) *pb.KeyValue {
	g.t.Helper()
	res, err := g.propose(id, &pb.RaftCommand{Revision: rev, Op: &pb.RaftCommand_Put{Put: &pb.PutRequest{Key: []byte(key), Value: []byte(value)}}})
	if err != nil || res.Err != nil {
		g.t.Fatalf("put %s via %d: %v / %v", key, id, err, res.Err)
	}
	return res.KV
}

// campaign makes replica id the leader.
func (g *testGroup) campaign(id uint64) {
	g.t.Helper()
	r := g.reps[id]
	r.mu.Lock()
	err := r.mu.rn.Campaign()
	r.mu.Unlock()
	if err != nil {
		g.t.Fatalf("campaign: %v", err)
	}
	g.pump()
	if !r.IsLeader() {
		g.t.Fatalf("replica %d did not become leader: %+v", id, r.Status())
	}
	for other, o := range g.reps {
		if g.cut[other] {
			continue
		}
		if lead, node := o.Leader(); lead != id || node != id {
			g.t.Fatalf("replica %d sees leader %d on node %d, want %d", other, lead, node, id)
		}
	}
}

// scanAll returns every user key of replica id's engine.
func (g *testGroup) scanAll(id uint64) []*pb.KeyValue {
	g.t.Helper()
	res, err := g.reps[id].Scan(nil, nil, 1<<20, false)
	if err != nil || res.More || len(res.Intents) > 0 {
		g.t.Fatalf("replica %d: scan: more=%v intents=%v err=%v", id, res.More, res.Intents, err)
	}
	return res.KVs
}

// get reads key's committed value on replica id (nil if absent).
func (g *testGroup) get(id uint64, key string) *pb.KeyValue {
	g.t.Helper()
	kv, intent, err := g.reps[id].Get([]byte(key))
	if err != nil || intent != nil {
		g.t.Fatalf("replica %d: get %q: intent=%v err=%v", id, key, intent, err)
	}
	return kv
}

// checkConverged asserts that the replicas in ids hold the same applied
// state and the same user data.
func (g *testGroup) checkConverged(ids ...uint64) {
	g.t.Helper()
	want := g.reps[ids[0]].storage.Applied()
	wantKVs := g.scanAll(ids[0])
	for _, id := range ids[1:] {
		if got := g.reps[id].storage.Applied(); !proto.Equal(got, want) {
			g.t.Errorf("replica %d applied %v, replica %d applied %v", id, got, ids[0], want)
		}
		if got := g.scanAll(id); !equalKVs(got, wantKVs) {
			g.t.Errorf("replica %d holds %v, replica %d holds %v", id, got, ids[0], wantKVs)
		}
	}
}

// engineUserKVs returns the raw user keys and values of replica id's engine.
func (g *testGroup) engineUserKVs(id uint64, span *pb.RangeDescriptor) []*pb.EngineKV {
	g.t.Helper()
	lo, hi := UserSpan(span.StartKey, span.EndKey)
	it, err := g.dbs[id].NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		g.t.Fatal(err)
	}
	defer it.Close()
	var kvs []*pb.EngineKV
	for valid := it.First(); valid; valid = it.Next() {
		kvs = append(kvs, &pb.EngineKV{Key: append([]byte(nil), it.Key()...), Value: append([]byte(nil), it.Value()...)})
	}
	if err := it.Error(); err != nil {
		g.t.Fatal(err)
	}
	return kvs
}

func equalKVs(a, b []*pb.KeyValue) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func nilIfEmpty(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

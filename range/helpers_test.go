package replica

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// testDescriptor is a range with three voters: replica i lives on node i.
// An empty end key means the end of the key space.
func testDescriptor(rangeID uint64, start, end string) *pb.RangeDescriptor {
	d := &pb.RangeDescriptor{RangeId: rangeID, StartKey: []byte(start), Generation: 1}
	if end != "" {
		d.EndKey = []byte(end)
	}
	for id := uint64(1); id <= 3; id++ {
		d.Replicas = append(d.Replicas, &pb.ReplicaDescriptor{NodeId: id, ReplicaId: id})
	}
	return d
}

// quietPebbleLogger drops Pebble's informational lines and routes errors to
// the test log. It must not outlive the test: every DB is closed in Cleanup.
type quietPebbleLogger struct{ t testing.TB }

func (l quietPebbleLogger) Infof(string, ...any) {}
func (l quietPebbleLogger) Errorf(format string, args ...any) {
	l.t.Logf("pebble: "+format, args...)
}
func (l quietPebbleLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}

// openTestDB opens a Pebble engine on fs (an in-memory filesystem).
func openTestDB(t testing.TB, fs vfs.FS) *pebble.DB {
	t.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: fs, Logger: quietPebbleLogger{t}})
	if err != nil {
		t.Fatalf("open pebble: %v", err)
	}
	return db
}

// bootstrap writes the initial state of desc into db with a synced batch.
func bootstrap(t testing.TB, db *pebble.DB, desc *pb.RangeDescriptor) {
	t.Helper()
	b := db.NewBatch()
	defer b.Close()
	if err := WriteInitialState(b, desc); err != nil {
		t.Fatalf("write initial state: %v", err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatalf("commit initial state: %v", err)
	}
}

// writeAppend writes an append in a batch of its own, synced, and marks
// it appended, without delivering its responses. It reports whether the
// append needed a sync.
func writeAppend(db *pebble.DB, r *Replica, app *raftpb.Message) (mustSync bool, err error) {
	if app == nil {
		return false, nil
	}
	b := db.NewBatch()
	defer b.Close()
	if mustSync, err = r.PersistAppend(b, app); err != nil {
		return false, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return false, err
	}
	r.MarkAppended(app)
	return mustSync, nil
}

// persistAppend writes rd's append (writeAppend) and delivers its
// responses: it steps those for r and returns the others, to be sent. It
// reports whether the append needed a sync. It is the node's round for one
// replica, without the pipelining.
func persistAppend(db *pebble.DB, r *Replica, rd Ready) (remote []raftpb.Message, mustSync bool, err error) {
	if rd.Append == nil {
		return nil, false, nil
	}
	if mustSync, err = writeAppend(db, r, rd.Append); err != nil {
		return nil, false, err
	}
	return r.DeliverLocal(rd.Append.Responses), mustSync, nil
}

package node

import (
	"log/slog"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"

	replica "github.com/raftrix/raftrixdb/range"
)

// TestSyncWaiterDeliversInOrderAfterEachSync: rounds are delivered in the
// order handed over, a round without a batch of its own only after the
// earlier rounds' syncs, and stop delivers everything handed over before it
// returns (the node closes the engine right after).
func TestSyncWaiterDeliversInOrderAfterEachSync(t *testing.T) {
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: pebbleLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	var delivered []uint64
	syncs := 0
	w := newSyncWaiter(
		func(_ *replica.Replica, msgs []raftpb.Message) { delivered = append(delivered, msgs[0].Index) },
		func(time.Duration) { syncs++ },
		func(err error) { t.Errorf("fatal: %v", err) })

	round := func(index uint64, withBatch bool) {
		aw := appendWait{start: time.Now(), deliveries: []delivery{{msgs: []raftpb.Message{{Index: index}}}}}
		if withBatch {
			b := db.NewBatch()
			if err := b.Set([]byte{byte(index)}, []byte("v"), nil); err != nil {
				t.Fatal(err)
			}
			if err := db.ApplyNoSyncWait(b, pebble.Sync); err != nil {
				t.Fatal(err)
			}
			aw.batch = b
		}
		w.wait(aw)
	}
	for i := uint64(1); i <= 20; i++ {
		round(i, i%3 != 0)
	}
	w.stop()

	if len(delivered) != 20 {
		t.Fatalf("delivered %d rounds before stop returned, want 20", len(delivered))
	}
	for i, index := range delivered {
		if index != uint64(i+1) {
			t.Fatalf("delivery %d is round %d: rounds must be delivered in order (%v)", i, index, delivered)
		}
	}
	if syncs != 14 {
		t.Fatalf("waited for %d syncs, want 14 (one per round with a batch)", syncs)
	}
}

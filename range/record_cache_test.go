package replica

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// checkRecordCache fails the test if the cache holds a record of a key that
// differs from the engine's (a missing key must be cached as nil).
func checkRecordCache(t *testing.T, db *pebble.DB, c *RecordCache) {
	t.Helper()
	if c == nil {
		return
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			stored, err := readValueRecord(db, []byte(k))
			if err != nil {
				t.Fatal(err)
			}
			cached := e.rec
			if cached == nil {
				cached = &pb.ValueRecord{}
			}
			if !proto.Equal(cached, stored) {
				t.Errorf("record cache of %q: %v, engine: %v", k, cached, stored)
			}
		}
		s.mu.Unlock()
	}
}

func TestRecordCache(t *testing.T) {
	var none *RecordCache
	none.Put([]byte("a"), &pb.ValueRecord{ModRevision: 1})
	if _, ok := none.Get([]byte("a")); ok {
		t.Fatal("a nil cache returned a record")
	}
	if NewRecordCache(0) != nil {
		t.Fatal("a cache of 0 bytes is not nil")
	}

	c := NewRecordCache(1 << 20)
	if _, ok := c.Get([]byte("a")); ok {
		t.Fatal("an empty cache knows a")
	}
	rec := &pb.ValueRecord{Value: []byte("v"), ModRevision: 3}
	c.Put([]byte("a"), rec)
	c.Put([]byte("gone"), nil)
	if got, ok := c.Get([]byte("a")); !ok || got != rec {
		t.Fatalf("Get(a) = %v, %v; want the record put", got, ok)
	}
	if got, ok := c.Get([]byte("gone")); !ok || got != nil {
		t.Fatalf("Get(gone) = %v, %v; want a known absent key", got, ok)
	}
	c.Clear()
	if _, ok := c.Get([]byte("a")); ok {
		t.Fatal("Clear kept a")
	}
}

// TestRecordCacheStaysWithinBudget fills a small cache with many more
// records than fit: it must stay within its budget and keep a key that is
// used all along.
func TestRecordCacheStaysWithinBudget(t *testing.T) {
	const budget = 64 << 10
	c := NewRecordCache(budget)
	hot := []byte("hot")
	c.Put(hot, &pb.ValueRecord{ModRevision: 1})
	value := make([]byte, 100)
	for i := range 10000 {
		c.Put(fmt.Appendf(nil, "k%05d", i), &pb.ValueRecord{Value: value, ModRevision: int64(i + 1)})
		if _, ok := c.Get(hot); !ok {
			t.Fatalf("lost the hot key after %d puts", i)
		}
	}
	var bytes int64
	for i := range c.shards {
		s := &c.shards[i]
		for k, e := range s.m {
			bytes += recordSize(len(k), e.rec)
		}
	}
	if bytes > budget {
		t.Fatalf("cache holds %d bytes, budget %d", bytes, budget)
	}
	if bytes < budget/4 {
		t.Fatalf("cache holds only %d bytes of a %d budget", bytes, budget)
	}
	if st := c.Stats(); st.Bytes != bytes || st.Hits != 10000 || st.Misses != 0 {
		t.Fatalf("Stats() = %+v; want %d bytes, 10000 hits, no misses", st, bytes)
	}
}

// TestRecordCacheHoldsWorkingSetOfItsBudget: keys whose records fill 60% of
// the budget, written and then read and rewritten at random, as applying
// puts does, are never evicted.
func TestRecordCacheHoldsWorkingSetOfItsBudget(t *testing.T) {
	const budget = 1 << 20
	value := make([]byte, 100)
	keys := int(budget * 6 / 10 / recordSize(len("k00000"), &pb.ValueRecord{Value: value}))
	c := NewRecordCache(budget)
	for i := range keys {
		c.Put(fmt.Appendf(nil, "k%05d", i), &pb.ValueRecord{Value: value, ModRevision: 1})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20 * keys {
		k := fmt.Appendf(nil, "k%05d", rng.IntN(keys))
		if _, ok := c.Get(k); !ok {
			t.Fatalf("after %d reads: %s evicted with %d of %d bytes used", i, k, c.Stats().Bytes, budget)
		}
		c.Put(k, &pb.ValueRecord{Value: value, ModRevision: int64(i + 2)})
	}
}

func TestRecordCacheStats(t *testing.T) {
	if st := (*RecordCache)(nil).Stats(); st != (RecordCacheStats{}) {
		t.Fatalf("a nil cache's stats: %+v", st)
	}
	c := NewRecordCache(1 << 20)
	rec := &pb.ValueRecord{Value: []byte("value"), ModRevision: 1}
	c.Get([]byte("a")) // a miss
	c.Put([]byte("a"), rec)
	c.Put([]byte("b"), nil)
	c.Get([]byte("a")) // hits, the second of a known absent key
	c.Get([]byte("b"))
	c.Get([]byte("c")) // a miss
	want := RecordCacheStats{Hits: 2, Misses: 2, Entries: 2, Bytes: recordSize(1, rec) + recordSize(1, nil)}
	if st := c.Stats(); st != want {
		t.Fatalf("Stats() = %+v, want %+v", st, want)
	}
	c.Put([]byte("a"), nil) // replacing a record changes the size, not the count
	want.Bytes = 2 * recordSize(1, nil)
	if st := c.Stats(); st != want {
		t.Fatalf("after replacing a: Stats() = %+v, want %+v", st, want)
	}
	c.Clear()
	want.Entries, want.Bytes = 0, 0
	if st := c.Stats(); st != want {
		t.Fatalf("after Clear: Stats() = %+v, want %+v (the counters are kept)", st, want)
	}
}

// TestRecordCacheMatchesEngine applies random puts, deletes, one-range
// transactions and prepared-then-resolved transactions over a few keys
// through a state machine with a tiny record cache, in batches as the node
// does, and checks after every batch that the cache agrees with the engine
// and that the results match a state machine without a cache.
func TestRecordCacheMatchesEngine(t *testing.T) {
	desc := testDescriptor(1, "", "")
	withCache := openTestDB(t, vfs.NewMem())
	withoutCache := openTestDB(t, vfs.NewMem())
	records := NewRecordCache(1 << 10)
	var revWith, revWithout int64
	rng := rand.New(rand.NewPCG(1, 2))
	key := func() []byte { return fmt.Appendf(nil, "k%d", rng.IntN(12)) }
	rev := int64(0)
	for batch := range 300 {
		var cmds []*pb.RaftCommand
		for range 1 + rng.IntN(4) {
			rev++
			switch op := rng.IntN(10); {
			case op < 5:
				cmds = append(cmds, &pb.RaftCommand{Revision: rev, Op: &pb.RaftCommand_Put{Put: &pb.PutRequest{
					Key: key(), Value: fmt.Appendf(nil, "v%d", rev)}}})
			case op < 7:
				cmds = append(cmds, &pb.RaftCommand{Revision: rev, Op: &pb.RaftCommand_Delete{Delete: &pb.DeleteRequest{Key: key()}}})
			case op < 8:
				a, b := key(), key()
				cmds = append(cmds, &pb.RaftCommand{Revision: rev, Op: &pb.RaftCommand_Txn{Txn: &pb.TxnOnePC{Txn: &pb.TxnRequest{
					Compare: []*pb.Compare{{Key: a, Target: pb.Compare_VERSION, Result: pb.Compare_GREATER, Version: 0}},
					Success: []*pb.RequestOp{{Request: &pb.RequestOp_Put{Put: &pb.PutRequest{Key: b, Value: []byte("t")}}}},
					Failure: []*pb.RequestOp{{Request: &pb.RequestOp_Delete{Delete: &pb.DeleteRequest{Key: b}}}},
				}}}})
			default:
				// Lock a key with an intent and resolve it at once, committed
				// or aborted.
				k, txnID := key(), fmt.Appendf(nil, "txn%d", rev)
				cmds = append(cmds, &pb.RaftCommand{Op: &pb.RaftCommand_Prepare{Prepare: &pb.TxnPrepare{
					TxnId: txnID, PrimaryKey: k, Heartbeat: rev,
					Success: []*pb.IndexedOp{{Op: &pb.RequestOp{Request: &pb.RequestOp_Put{Put: &pb.PutRequest{Key: k, Value: []byte("x")}}}}},
				}}})
				status := pb.TxnRecord_ABORTED
				if rng.IntN(2) == 0 {
					status = pb.TxnRecord_COMMITTED
				}
				cmds = append(cmds, &pb.RaftCommand{Op: &pb.RaftCommand_Resolve{Resolve: &pb.ResolveIntents{
					TxnId: txnID, PrimaryKey: k, Keys: [][]byte{k},
					Record: &pb.TxnRecord{TxnId: txnID, Status: status, Succeeded: true, CommitRevision: rev},
				}}})
			}
		}
		apply := func(db *pebble.DB, records *RecordCache, lastRevision *int64) []string {
			b := db.NewIndexedBatch()
			defer b.Close()
			sm := &stateMachine{b: b, records: records, desc: desc, lastRevision: *lastRevision}
			var out []string
			for _, cmd := range cmds {
				out = append(out, formatTxnResult(sm.apply(cmd)))
			}
			if err := b.Commit(pebble.NoSync); err != nil {
				t.Fatal(err)
			}
			*lastRevision = sm.lastRevision
			return out
		}
		got := apply(withCache, records, &revWith)
		want := apply(withoutCache, nil, &revWithout)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("batch %d: with the cache %v, without %v", batch, got, want)
		}
		checkRecordCache(t, withCache, records)
	}
}

// BenchmarkRecordCacheApply does what applying a put does to the cache: a
// Get of the key's record, then a Put of the new one, for keys drawn
// uniformly from 100,000 (the bench's key space) with 256-byte values and
// the node's default budget, after every key was written once (the bench's
// load). A miss would read the engine; here it only counts.
func BenchmarkRecordCacheApply(b *testing.B) {
	const keys = 100_000
	c := NewRecordCache(64 << 20)
	names := make([][]byte, keys)
	value := make([]byte, 256)
	for i := range names {
		names[i] = fmt.Appendf(nil, "key%012d", i)
		c.Put(names[i], &pb.ValueRecord{Value: value, ModRevision: 1})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rec := &pb.ValueRecord{Value: value, ModRevision: 2}
	b.ResetTimer()
	for range b.N {
		k := names[rng.IntN(keys)]
		c.Get(k)
		c.Put(k, rec)
	}
	b.StopTimer()
	st := c.Stats()
	b.ReportMetric(float64(st.Misses)/float64(b.N), "misses/op")
}

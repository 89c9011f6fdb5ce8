package replica

import (
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

func cacheEnts(term uint64, lo, hi uint64) []raftpb.Entry {
	var ents []raftpb.Entry
	for i := lo; i < hi; i++ {
		ents = append(ents, raftpb.Entry{Index: i, Term: term, Data: make([]byte, 100)})
	}
	return ents
}

func indexes(ents []raftpb.Entry) []uint64 {
	var out []uint64
	for _, e := range ents {
		out = append(out, e.Index)
	}
	return out
}

func TestEntryCache(t *testing.T) {
	var c entryCache
	c.add(cacheEnts(1, 5, 10)) // 5..9
	if got, ok := c.get(5, 10, 1<<20); !ok || len(got) != 5 || got[0].Index != 5 {
		t.Fatalf("get(5,10) = %v, %v", indexes(got), ok)
	}
	if _, ok := c.get(4, 6, 1<<20); ok {
		t.Fatal("get(4,6) hit, but 4 was never cached")
	}
	if _, ok := c.get(8, 11, 1<<20); ok {
		t.Fatal("get(8,11) hit, but 10 was never cached")
	}
	// maxSize: at least one entry, then stop before exceeding it.
	one := uint64(cacheEnts(1, 1, 2)[0].Size())
	if got, _ := c.get(5, 10, 1); len(got) != 1 {
		t.Fatalf("get with maxSize 1 returned %d entries, want 1", len(got))
	}
	if got, _ := c.get(5, 10, 2*one); len(got) != 2 {
		t.Fatalf("get with maxSize of two entries returned %d entries", len(got))
	}
	// A new leader overwrites the uncommitted suffix from 8 on.
	c.add(cacheEnts(2, 8, 12)) // 5..7 term 1, 8..11 term 2
	for i, want := range map[uint64]uint64{5: 1, 7: 1, 8: 2, 11: 2} {
		if term, ok := c.term(i); !ok || term != want {
			t.Fatalf("term(%d) = %d, %v; want %d", i, term, ok, want)
		}
	}
	if _, ok := c.term(12); ok {
		t.Fatal("term(12) hit")
	}
	// Appending to the returned slice must not change the cache.
	got, _ := c.get(5, 7, 1<<20)
	_ = append(got, raftpb.Entry{Index: 99, Term: 99})
	if term, _ := c.term(7); term != 1 {
		t.Fatalf("cache changed by a caller's append: term(7) = %d", term)
	}
	// Applied entries go; the terms of the last run of them (8 and 9, term
	// 2) stay known, those before the term changed do not.
	c.dropTo(9)
	if _, ok := c.get(9, 10, 1<<20); ok {
		t.Fatal("get(9,10) hit after dropTo(9)")
	}
	for i, want := range map[uint64]uint64{8: 2, 9: 2} {
		if term, ok := c.term(i); !ok || term != want {
			t.Fatalf("term(%d) after dropTo(9) = %d, %v; want %d", i, term, ok, want)
		}
	}
	if _, ok := c.term(7); ok {
		t.Fatal("term(7) hit after dropTo(9), but the run of term 2 starts at 8")
	}
	if got, ok := c.get(10, 12, 1<<20); !ok || len(got) != 2 {
		t.Fatalf("get(10,12) after dropTo(9) = %v, %v", indexes(got), ok)
	}
	// A gap (entries after a snapshot) starts the cache again.
	c.add(cacheEnts(3, 20, 22))
	if _, ok := c.term(11); ok {
		t.Fatal("entry 11 still cached after a non-contiguous add")
	}
	if got, ok := c.get(20, 22, 1<<20); !ok || len(got) != 2 {
		t.Fatalf("get(20,22) = %v, %v", indexes(got), ok)
	}
	c.dropTo(100)
	if len(c.ents) != 0 || c.bytes != 0 {
		t.Fatalf("after dropping everything: %d entries, %d bytes", len(c.ents), c.bytes)
	}
	// 20 and 21 do not continue the run 8..9: they start a new one.
	if term, ok := c.term(21); !ok || term != 3 {
		t.Fatalf("term(21) = %d, %v; want 3", term, ok)
	}
	if _, ok := c.term(9); ok {
		t.Fatal("term(9) hit after a run that does not continue it")
	}
}

// TestEntryCacheKeepsTermsOfAppliedEntries checks that an applied entry's
// term is answered from memory after the entry has left the cache.
func TestEntryCacheKeepsTermsOfAppliedEntries(t *testing.T) {
	var c entryCache
	c.add(cacheEnts(4, 1, 6)) // 1..5, term 4
	c.dropTo(5)
	for i := uint64(1); i <= 5; i++ {
		if term, ok := c.term(i); !ok || term != 4 {
			t.Fatalf("term(%d) = %d, %v; want 4 from the applied run", i, term, ok)
		}
	}
	c.add(cacheEnts(5, 6, 8)) // 6..7, term 5
	c.dropTo(6)
	if term, ok := c.term(6); !ok || term != 5 {
		t.Fatalf("term(6) = %d, %v; want 5", term, ok)
	}
	if term, ok := c.term(7); !ok || term != 5 {
		t.Fatalf("term(7) = %d, %v; want 5 (still cached)", term, ok)
	}
}

func TestEntryCacheIsBounded(t *testing.T) {
	var c entryCache
	ents := cacheEnts(1, 1, 1+2*maxEntryCacheBytes/100)
	c.add(ents)
	if c.bytes > maxEntryCacheBytes {
		t.Fatalf("cache holds %d bytes, bound is %d", c.bytes, maxEntryCacheBytes)
	}
	last := ents[len(ents)-1].Index
	if _, ok := c.term(last); !ok {
		t.Fatal("the newest entry was evicted")
	}
	if _, ok := c.term(1); ok {
		t.Fatal("the oldest entry is still cached past the bound")
	}
}

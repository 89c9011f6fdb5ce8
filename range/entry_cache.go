package replica

import "go.etcd.io/raft/v3/raftpb"

// entryCache holds a replica's log entries from when they are persisted
// until they are applied, so that Raft reads them from memory rather than
// from the engine. Raft reads every entry back at least once after it is
// persisted (to hand committed entries to apply; terms to match appends
// and to commit), and under a put-heavy load those engine reads took an
// eighth of a node's CPU, done under the replica lock (scripts/profile.sh).
//
// It holds entries with contiguous indexes. Applied entries are dropped, so
// an idle range keeps none; maxEntryCacheBytes bounds a range that falls
// behind in applying. Entries are shared, never copied: Raft does not
// modify an entry once it is in a Ready.
//
// The terms of the applied entries it dropped are kept, as one run of
// indexes with the same term: the leader asks for the term of the entry
// before every append it sends (the follower's last entry, usually applied
// by then), and the follower asks the same to match it. Read from the
// engine, those lookups took 5% of the nodes' CPU under puts
// (scripts/profile.sh). An applied entry is committed, and a committed
// entry's term never changes, so the run stays true until truncation
// passes it.
type entryCache struct {
	ents  []raftpb.Entry
	bytes int
	// applied: every entry in [applied.first, applied.last] was applied
	// with term applied.term.
	applied termRun
}

// termRun is a run of log indexes whose entries have the same term. The
// zero value holds none: its term, 0, is no entry's.
type termRun struct{ first, last, term uint64 }

// extend adds an applied entry to the run; an entry that does not continue
// it (a new term, or a gap) starts a new run.
func (r *termRun) extend(e *raftpb.Entry) {
	if e.Index == r.last+1 && e.Term == r.term {
		r.last = e.Index
		return
	}
	*r = termRun{first: e.Index, last: e.Index, term: e.Term}
}

// maxEntryCacheBytes bounds one replica's cache; the oldest entries go
// first, and reads of them fall back to the engine.
const maxEntryCacheBytes = 4 << 20

// add records entries just persisted. They replace any cached entries at
// their indexes and after (a new leader overwrote an uncommitted suffix).
func (c *entryCache) add(ents []raftpb.Entry) {
	if len(ents) == 0 {
		return
	}
	first := ents[0].Index
	if n := len(c.ents); n == 0 || first > c.ents[n-1].Index+1 || first < c.ents[0].Index {
		c.clear() // not contiguous with what is cached: start again
	} else {
		c.truncateFrom(first)
	}
	for i := range ents {
		c.bytes += ents[i].Size()
	}
	c.ents = append(c.ents, ents...)
	for c.bytes > maxEntryCacheBytes && len(c.ents) > 0 {
		c.bytes -= c.ents[0].Size()
		c.ents = c.ents[1:]
	}
}

// truncateFrom drops the cached entries at index and after.
func (c *entryCache) truncateFrom(index uint64) {
	for len(c.ents) > 0 && c.ents[len(c.ents)-1].Index >= index {
		c.bytes -= c.ents[len(c.ents)-1].Size()
		c.ents = c.ents[:len(c.ents)-1]
	}
}

// dropTo drops the cached entries at index and before (applied or
// truncated).
func (c *entryCache) dropTo(index uint64) {
	i := 0
	for i < len(c.ents) && c.ents[i].Index <= index {
		c.bytes -= c.ents[i].Size()
		c.applied.extend(&c.ents[i])
		i++
	}
	if i == len(c.ents) {
		c.clear()
		return
	}
	// Copy the rest to the front, so the backing array does not keep
	// growing while the cache slides along the log.
	n := copy(c.ents, c.ents[i:])
	clear(c.ents[n:])
	c.ents = c.ents[:n]
}

func (c *entryCache) clear() {
	c.ents, c.bytes = nil, 0
}

// get returns the entries [lo, hi), at most maxSize bytes of them but at
// least one (as raft.Storage.Entries), if they are all cached. It returns
// a copy of the slice (not of the entries' data), so a caller appending to
// it cannot overwrite the cache.
func (c *entryCache) get(lo, hi, maxSize uint64) ([]raftpb.Entry, bool) {
	if len(c.ents) == 0 || lo < c.ents[0].Index || hi > c.ents[len(c.ents)-1].Index+1 || lo >= hi {
		return nil, false
	}
	start := int(lo - c.ents[0].Index)
	end := int(hi - c.ents[0].Index)
	var size uint64
	for i := start; i < end; i++ {
		size += uint64(c.ents[i].Size())
		if i > start && size > maxSize {
			end = i
			break
		}
	}
	out := make([]raftpb.Entry, end-start)
	copy(out, c.ents[start:end])
	return out, true
}

// term returns the term of the entry at index, if it is cached or in the
// run of applied entries. The caller checks that index is not truncated.
func (c *entryCache) term(index uint64) (uint64, bool) {
	if len(c.ents) > 0 && index >= c.ents[0].Index && index <= c.ents[len(c.ents)-1].Index {
		return c.ents[index-c.ents[0].Index].Term, true
	}
	if c.applied.term != 0 && index >= c.applied.first && index <= c.applied.last {
		return c.applied.term, true
	}
	return 0, false
}

package replica

import (
	"hash/maphash"
	"sync"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// RecordCache keeps the value records of recently written and read user keys
// in memory, shared by all replicas of a node.
//
// Why: applying a put must read the key's previous record (for its version,
// create revision and any intent). Under constant writes that read misses
// Pebble's block cache (flushes and compactions keep writing new tables) and
// took a fifth of a node's CPU; etcd avoids it with an in-memory index of
// every key. This cache is bounded instead.
//
// It is only correct because every change to a user key on this node goes
// through it:
//   - the state machine puts every record it writes into its batch (nil for
//     a delete) and every record it reads from its batch, all while
//     applying: a key belongs to one range on a node and a range is applied
//     by one worker at a time, so these never race for a key;
//   - installing a snapshot or destroying a replica replaces user data
//     wholesale, so both call Clear.
//
// The cache may hold a record whose batch is not committed yet. Only
// committed Raft entries are applied, so such a record is decided; a reader
// that sees it before the batch commits returns a write whose entry is
// committed, which is linearizable. Readers must not call Put: a record
// they read from Pebble may already be older than the cache's.
//
// Records in the cache are shared: nobody may modify one after Put.
//
// Eviction is CLOCK (second chance), per shard: a Get marks the key's entry
// used; when a Put takes the shard over its budget, a scan of the shard's
// map (from a random place: Go's map iteration order) clears the mark of
// each used entry it passes and drops unused ones until the shard is an
// eighth under budget. A key read again since the last scan survives it; a
// new key starts unmarked, so keys written once and never read again go
// first.
//
// A generational scheme came before (two maps, the previous dropped whole):
// it held a working set of only half the budget, and the entries it moved
// between generations (delete, insert) left tombstones that made lookups
// of absent keys slow. Here the whole budget holds records, and entries are
// deleted only by eviction, whose slots the next inserts reuse.
type RecordCache struct {
	seed   maphash.Seed
	shards [recordCacheShards]recordShard
}

const recordCacheShards = 16

// recordOverhead approximates the bytes an entry costs beyond its key and
// value (map slot, record struct, string and slice headers).
const recordOverhead = 96

type recordShard struct {
	mu     sync.Mutex
	budget int64 // bytes the shard may hold
	bytes  int64
	m      map[string]cacheEntry
	// hits and misses count Get calls, for RecordCacheStats.
	hits, misses uint64
}

// cacheEntry is a key's record (nil: the key has none), its size as
// counted against the budget, and CLOCK's mark.
type cacheEntry struct {
	rec  *pb.ValueRecord
	size int32
	used bool
}

// RecordCacheStats is what the cache reports to the node's metrics.
type RecordCacheStats struct {
	Hits, Misses uint64 // Get calls that found the key or did not, ever
	Entries      int    // keys held now
	Bytes        int64  // their approximate size (see recordSize)
}

// NewRecordCache returns a cache holding about maxBytes of records; 0 or
// less gives nil, a cache that holds nothing.
func NewRecordCache(maxBytes int64) *RecordCache {
	if maxBytes <= 0 {
		return nil
	}
	c := &RecordCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		s := &c.shards[i]
		s.budget = maxBytes / recordCacheShards
		s.m = make(map[string]cacheEntry)
	}
	return c
}

func (c *RecordCache) shard(key []byte) *recordShard {
	return &c.shards[maphash.Bytes(c.seed, key)%recordCacheShards]
}

// Get returns the cached record of key. ok is false if the cache does not
// know the key; a nil (deleted) or empty (read as absent) record with ok
// true means the key has no record.
func (c *RecordCache) Get(key []byte) (rec *pb.ValueRecord, ok bool) {
	if c == nil {
		return nil, false
	}
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[string(key)]
	if !ok {
		s.misses++
		return nil, false
	}
	s.hits++
	if !e.used {
		e.used = true
		s.m[string(key)] = e
	}
	return e.rec, true
}

// Put records key's record as the state machine wrote or read it; nil means
// the key has none.
func (c *RecordCache) Put(key []byte, rec *pb.ValueRecord) {
	if c == nil {
		return
	}
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[string(key)]
	if ok {
		s.bytes -= int64(e.size)
	}
	size := recordSize(len(key), rec)
	s.m[string(key)] = cacheEntry{rec: rec, size: int32(size), used: e.used}
	s.bytes += size
	if s.bytes > s.budget {
		s.evictLocked()
	}
}

// evictLocked drops entries not used since the scan last passed them until
// the shard is an eighth under budget (so that scans are rare).
func (s *recordShard) evictLocked() {
	target := s.budget - s.budget/8
	// Two passes at most: the first clears every mark it passes.
	for pass := 0; pass < 2 && s.bytes > target; pass++ {
		for k, e := range s.m {
			if s.bytes <= target {
				return
			}
			if e.used {
				e.used = false
				s.m[k] = e
				continue
			}
			delete(s.m, k)
			s.bytes -= int64(e.size)
		}
	}
}

// Stats sums the shards' counters and sizes.
func (c *RecordCache) Stats() RecordCacheStats {
	var st RecordCacheStats
	if c == nil {
		return st
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		st.Hits += s.hits
		st.Misses += s.misses
		st.Entries += len(s.m)
		st.Bytes += s.bytes
		s.mu.Unlock()
	}
	return st
}

// Clear forgets everything.
func (c *RecordCache) Clear() {
	if c == nil {
		return
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.m = make(map[string]cacheEntry)
		s.bytes = 0
		s.mu.Unlock()
	}
}

func recordSize(keyLen int, rec *pb.ValueRecord) int64 {
	n := int64(keyLen + recordOverhead)
	if rec != nil {
		n += int64(len(rec.Value))
		if rec.Intent != nil {
			n += int64(len(rec.Intent.TxnId) + len(rec.Intent.PrimaryKey) +
				len(rec.Intent.GetOnSuccess().GetValue()) + len(rec.Intent.GetOnFailure().GetValue()) + recordOverhead)
		}
	}
	return n
}

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
// Eviction is by generation: each shard keeps a current and a previous map;
// when the current map holds half the shard's budget it becomes the previous
// one and the old previous is dropped. A hit in the previous map copies the
// entry to the current one, so keys in use survive. Writes go to the current
// map only, so a key's entry there is always its latest, and one in the
// previous map is its latest if the current map does not hold the key.
//
// Nothing is ever deleted from a map (a copied entry stays in the previous
// map until it is dropped whole): a Go map keeps a tombstone for each
// deleted slot, and a lookup of a key it does not hold probes past them.
// When hits deleted from the previous map, its lookups (every Get of a key
// the current map lacked, and every Put) took 1.4 µs and the cache 5% of a
// node's CPU under puts (scripts/profile.sh).
type RecordCache struct {
	seed   maphash.Seed
	shards [recordCacheShards]recordShard
}

const recordCacheShards = 16

// recordOverhead approximates the bytes an entry costs beyond its key and
// value (map slot, record struct, string and slice headers).
const recordOverhead = 96

type recordShard struct {
	mu        sync.Mutex
	budget    int64 // bytes the current map may hold before it rotates
	curBytes  int64
	prevBytes int64
	cur       map[string]*pb.ValueRecord
	prev      map[string]*pb.ValueRecord
	// hits and misses count Get calls, for RecordCacheStats.
	hits, misses uint64
}

// RecordCacheStats is what the cache reports to the node's metrics.
type RecordCacheStats struct {
	Hits, Misses uint64 // Get calls that found the key or did not, ever
	Entries      int    // entries held now (a key copied to the current generation counts twice)
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
		s.budget = maxBytes / recordCacheShards / 2
		s.cur = make(map[string]*pb.ValueRecord)
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
	if rec, ok = s.cur[string(key)]; ok {
		s.hits++
		return rec, true
	}
	if rec, ok = s.prev[string(key)]; ok {
		s.hits++
		s.addLocked(string(key), rec)
		return rec, true
	}
	s.misses++
	return nil, false
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
	s.addLocked(string(key), rec)
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
		st.Entries += len(s.cur) + len(s.prev)
		st.Bytes += s.curBytes + s.prevBytes
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
		s.cur = make(map[string]*pb.ValueRecord)
		s.prev = nil
		s.curBytes, s.prevBytes = 0, 0
		s.mu.Unlock()
	}
}

func (s *recordShard) addLocked(key string, rec *pb.ValueRecord) {
	if old, ok := s.cur[key]; ok {
		s.curBytes -= recordSize(key, old)
	}
	s.cur[key] = rec
	s.curBytes += recordSize(key, rec)
	if s.curBytes > s.budget {
		s.prev, s.prevBytes = s.cur, s.curBytes
		s.cur = make(map[string]*pb.ValueRecord, len(s.prev))
		s.curBytes = 0
	}
}

func recordSize(key string, rec *pb.ValueRecord) int64 {
	n := int64(len(key) + recordOverhead)
	if rec != nil {
		n += int64(len(rec.Value))
		if rec.Intent != nil {
			n += int64(len(rec.Intent.TxnId) + len(rec.Intent.PrimaryKey) +
				len(rec.Intent.GetOnSuccess().GetValue()) + len(rec.Intent.GetOnFailure().GetValue()) + recordOverhead)
		}
	}
	return n
}

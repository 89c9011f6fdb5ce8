package client

import (
	"bytes"
	"sync"

	"github.com/google/btree"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// rangeEntry is what the client believes about one range: its descriptor
// and where its leader is. Entries are immutable once in the cache; a change
// replaces the entry.
type rangeEntry struct {
	desc     *pb.RangeDescriptor
	leaderID uint64
	// leaderAddr is empty when the leader or its address is unknown:
	// requests then go to a seed endpoint, which forwards them. leaderID
	// may be set without it (a leader whose address is being looked up).
	leaderAddr string
}

func (e *rangeEntry) contains(key []byte) bool {
	return bytes.Compare(key, e.desc.StartKey) >= 0 &&
		(len(e.desc.EndKey) == 0 || bytes.Compare(key, e.desc.EndKey) < 0)
}

func entryLess(a, b *rangeEntry) bool { return bytes.Compare(a.desc.StartKey, b.desc.StartKey) < 0 }

// rangeCache holds range entries ordered by start key, never overlapping.
// Descriptors only ever split or change replicas (no merges), so of two
// overlapping descriptors one descends from the other and has the higher
// generation: a newer descriptor evicts what it overlaps, an older one is
// dropped.
//
// Every request reads the cache and few change it, so readers share mu: the
// btree allows concurrent reads.
type rangeCache struct {
	mu   sync.RWMutex
	tree *btree.BTreeG[*rangeEntry] // guarded by mu
}

func newRangeCache() *rangeCache {
	return &rangeCache{tree: btree.NewG(8, entryLess)}
}

// probe returns a search key for the tree: an entry starting at key. The
// entry and its descriptor share one allocation.
func probe(key []byte) *rangeEntry {
	p := &struct {
		e rangeEntry
		d pb.RangeDescriptor
	}{}
	p.d.StartKey = key
	p.e.desc = &p.d
	return &p.e
}

// get returns the entry whose span holds key.
func (c *rangeCache) get(key []byte) (rangeEntry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e := c.getLocked(key); e != nil {
		return *e, true
	}
	return rangeEntry{}, false
}

// getLocked needs mu held, for reading at least.
func (c *rangeCache) getLocked(key []byte) *rangeEntry {
	var found *rangeEntry
	c.tree.DescendLessOrEqual(probe(key), func(e *rangeEntry) bool {
		found = e
		return false
	})
	if found == nil || !found.contains(key) {
		return nil
	}
	return found
}

// overlappingLocked returns the entries whose span intersects desc's.
func (c *rangeCache) overlappingLocked(desc *pb.RangeDescriptor) []*rangeEntry {
	var out []*rangeEntry
	c.tree.DescendLessOrEqual(probe(desc.StartKey), func(e *rangeEntry) bool {
		if len(e.desc.EndKey) == 0 || bytes.Compare(e.desc.EndKey, desc.StartKey) > 0 {
			out = append(out, e)
		}
		return false
	})
	c.tree.AscendGreaterOrEqual(probe(desc.StartKey), func(e *rangeEntry) bool {
		if len(desc.EndKey) > 0 && bytes.Compare(e.desc.StartKey, desc.EndKey) >= 0 {
			return false
		}
		if len(out) == 0 || out[len(out)-1] != e {
			out = append(out, e)
		}
		return true
	})
	return out
}

// insert adds e unless an entry it overlaps is newer, evicting the entries
// it overlaps. An entry of the same generation as one it overlaps replaces
// it (a fresher leader) unless onlyNewer is set. It reports whether e went
// in.
func (c *rangeCache) insert(e rangeEntry, onlyNewer bool) bool {
	if e.desc == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.overlappingLocked(e.desc)
	for _, o := range old {
		if o.desc.Generation > e.desc.Generation || (onlyNewer && o.desc.Generation == e.desc.Generation) {
			return false
		}
	}
	for _, o := range old {
		c.tree.Delete(o)
	}
	c.tree.ReplaceOrInsert(&e)
	return true
}

// setLeader records the leader of the range holding key, if the cache still
// holds that key in range rangeID. A zero leaderID means the leader is
// unknown; an empty address that its address is.
func (c *rangeCache) setLeader(key []byte, rangeID, leaderID uint64, addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.getLocked(key)
	if e == nil || e.desc.RangeId != rangeID || (e.leaderID == leaderID && e.leaderAddr == addr) {
		return
	}
	c.tree.ReplaceOrInsert(&rangeEntry{desc: e.desc, leaderID: leaderID, leaderAddr: addr})
}

// evict removes the entry holding key if it is still the one of rangeID
// (not a newer one put in meanwhile).
func (c *rangeCache) evict(key []byte, rangeID uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.getLocked(key); e != nil && e.desc.RangeId == rangeID {
		c.tree.Delete(e)
	}
}

// forgetAddr marks the leader unknown in every entry whose leader is at
// addr: that node cannot be reached.
func (c *rangeCache) forgetAddr(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var stale []*rangeEntry
	c.tree.Ascend(func(e *rangeEntry) bool {
		if e.leaderAddr == addr {
			stale = append(stale, e)
		}
		return true
	})
	for _, e := range stale {
		c.tree.ReplaceOrInsert(&rangeEntry{desc: e.desc})
	}
}

// entries returns every entry in key order (for tests).
func (c *rangeCache) entries() []rangeEntry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []rangeEntry
	c.tree.Ascend(func(e *rangeEntry) bool {
		out = append(out, *e)
		return true
	})
	return out
}

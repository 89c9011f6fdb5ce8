package client

// Hooks for the external tests (package client_test), which run after the
// bank test: they look at the client's routing state.

// RoutingStats counts routing events of a DB.
type RoutingStats struct {
	Lookups, Direct, Forwarded, RoutingErrors int64
}

// StatsOf returns db's routing counters.
func StatsOf(db *DB) RoutingStats {
	return RoutingStats{
		Lookups:       db.stats.lookups.Load(),
		Direct:        db.stats.direct.Load(),
		Forwarded:     db.stats.forwarded.Load(),
		RoutingErrors: db.stats.routingErrors.Load(),
	}
}

// Sub returns the events counted since o.
func (s RoutingStats) Sub(o RoutingStats) RoutingStats {
	return RoutingStats{s.Lookups - o.Lookups, s.Direct - o.Direct, s.Forwarded - o.Forwarded, s.RoutingErrors - o.RoutingErrors}
}

// CachedRange is one range cache entry.
type CachedRange struct {
	RangeID, Generation, LeaderID uint64
	LeaderAddr                    string
	Start, End                    []byte
}

func exportEntry(e rangeEntry) CachedRange {
	return CachedRange{RangeID: e.desc.RangeId, Generation: e.desc.Generation, LeaderID: e.leaderID, LeaderAddr: e.leaderAddr,
		Start: e.desc.StartKey, End: e.desc.EndKey}
}

// CachedRangeOf returns the cache entry holding key.
func CachedRangeOf(db *DB, key []byte) (CachedRange, bool) {
	e, ok := db.cache.get(key)
	if !ok {
		return CachedRange{}, false
	}
	return exportEntry(e), true
}

// CachedRanges returns every cache entry in key order.
func CachedRanges(db *DB) []CachedRange {
	var out []CachedRange
	for _, e := range db.cache.entries() {
		out = append(out, exportEntry(e))
	}
	return out
}

// BatchStats returns how many KV.Batch calls db made and how many requests
// they carried.
func BatchStats(db *DB) (batches, requests int64) {
	return db.stats.batches.Load(), db.stats.batchedRequests.Load()
}

package node

import (
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
)

// engineOptions are the Pebble settings of the node's one engine.
//
// Pebble's defaults suit an embedded store with little memory; a node's
// engine serves every replica's apply, which reads each written key's
// previous record (for its create revision and version) when the record
// cache does not have it, and every linearizable read. With the default
// 8 MiB block cache, a put-heavy run over 100,000 keys spent a quarter of a
// node's CPU in read system calls re-reading index and data blocks
// (scripts/profile.sh, BENCHMARKS.md).
func (n *Node) engineOptions() *pebble.Options {
	opts := &pebble.Options{
		FS:        tableBufferingFS{n.cfg.FS},
		Logger:    pebbleLogger{n.logger.With("component", "pebble")},
		CacheSize: n.cfg.CacheBytes,
		// Fewer, larger flushes than the 4 MiB default: under 256 writers
		// 64 MiB gave 1.27x the puts/s of 4 MiB, but a larger skiplist
		// costs every insert and lookup, and with one writer 16 MiB gave
		// 1.24x the puts/s of 64 MiB for the same throughput under 256
		// (scripts/ab.sh, BENCHMARKS.md). Pebble starts with a small
		// memtable and grows it up to this size.
		MemTableSize: 16 << 20,
		// Under load, fsyncs spaced out so that each covers more Raft
		// rounds (sync_pacer.go).
		WALMinSyncInterval: n.syncPacer.interval,
	}
	// Bloom filters let a point read skip tables that lack the key: apply
	// reads the previous record of every key it writes, and most puts of a
	// large key space miss in all but one level.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	opts.EnsureDefaults()
	return opts
}

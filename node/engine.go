package node

import (
	"time"

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
		FS:        n.cfg.FS,
		Logger:    pebbleLogger{n.logger.With("component", "pebble")},
		CacheSize: n.cfg.CacheBytes,
		// Fewer, larger flushes than the 4 MiB default: under 256 writers
		// 64 MiB gave 1.27x the puts/s of 4 MiB, but a larger skiplist
		// costs every insert and lookup, and with one writer 16 MiB gave
		// 1.24x the puts/s of 64 MiB for the same throughput under 256
		// (scripts/ab.sh, BENCHMARKS.md). Pebble starts with a small
		// memtable and grows it up to this size.
		MemTableSize: 16 << 20,
	}
	// Bloom filters let a point read skip tables that lack the key: apply
	// reads the previous record of every key it writes, and most puts of a
	// large key space miss in all but one level.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	// Value separation: values of 256 bytes or more (every Raft log entry
	// of a put and its value record) go to blob files at flush, and
	// compactions move 30-byte references instead of rewriting them. Every
	// entry and most values were flushed to L0 and rewritten by compactions
	// about twice (the log is truncated after the memtable is flushed):
	// compactions were a sixth of a node's CPU under puts. The cost is disk:
	// overwritten and truncated values stay in their blob files until a
	// file is mostly garbage or is rewritten (after 5 minutes, once 20% of it
	// is garbage): 1.5x the disk use after a minute of puts. Puts 1.14x,
	// CPU per put 0.87x; reads (95%) 1.19x (scripts/ab.sh, BENCHMARKS.md).
	// It needs the newest on-disk format (columnar blocks), which Pebble
	// ratchets existing stores up to when they open.
	opts.FormatMajorVersion = pebble.FormatNewest
	opts.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
		return pebble.ValueSeparationPolicy{
			Enabled:               true,
			MinimumSize:           256,
			MaxBlobReferenceDepth: 10,
			RewriteMinimumAge:     5 * time.Minute,
			TargetGarbageRatio:    0.2,
		}
	}
	opts.EnsureDefaults()
	return opts
}

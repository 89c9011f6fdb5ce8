package node

import (
	"sync"
	"sync/atomic"
	"time"
)

// syncPacer spaces out the write-ahead log's fsyncs while Raft rounds come
// faster than the disk syncs them, so that each fsync makes more rounds
// durable at once; with few rounds it adds no delay.
//
// Why: under load every fsync has its cost in CPU, in this process (the
// system call and the write of the log's pending block) and in the kernel's
// journal threads, which share the cores with the nodes. With 256 writers
// an fsync took 2.5 ms and covered about eight rounds; rounds waited 5.2 ms
// for their sync. Pebble's WALMinSyncInterval holds the next fsync back
// until an interval after the last one ended: 2 ms of it gave 1.12x the
// puts/s and 0.93x the CPU per put, 5 ms 0.91x of that. But with one writer
// each round is alone in its fsync, and holding the next one back would only
// add to every write's latency; so the interval applies only while the
// fsyncs cover, on average over the last few, at least busyRoundsPerSync
// rounds each (a moving average: one busy fsync among quiet ones, as a
// single client's transaction makes, must not start it). So paced, 256
// writers got 1.24x the puts/s at 0.83x the CPU per put, and one client's
// 4-range transactions 1.07x; pacing after any fsync that alone covered four
// rounds had given 1.14x the puts/s (15% fewer fsyncs, each covering 47
// entries instead of 37) but 0.92x those transactions (scripts/ab.sh,
// BENCHMARKS.md).
//
// Durability is unchanged: a round's responses still wait for its fsync.
type syncPacer struct {
	// rounds counts the Raft rounds that asked for a sync.
	rounds atomic.Uint64
	// mu guards seen, rounds when the previous fsync ended, and perSync, the
	// moving average of the rounds each fsync covered. Pebble's log flusher
	// calls interval; when the engine switches to a new log, the old log's
	// flusher may still be finishing its last fsync while the new one runs.
	mu      sync.Mutex
	seen    uint64
	perSync float64
}

const (
	// syncSpacing is the interval between fsyncs under load.
	syncSpacing = 2 * time.Millisecond
	// busyRoundsPerSync is how many rounds the fsyncs must make durable on
	// average for the next to be held back.
	busyRoundsPerSync = 4
	// perSyncWeight is the weight of the latest fsync in the average.
	perSyncWeight = 1.0 / 8
)

// roundAskedSync records a round whose append batch asked for a sync.
func (p *syncPacer) roundAskedSync() { p.rounds.Add(1) }

// interval is the engine's WALMinSyncInterval: Pebble's log flusher calls
// it after each fsync and holds the next one back that long.
func (p *syncPacer) interval() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.rounds.Load()
	covered := float64(now - p.seen)
	p.seen = now
	p.perSync += perSyncWeight * (covered - p.perSync)
	if p.perSync >= busyRoundsPerSync {
		return syncSpacing
	}
	return 0
}

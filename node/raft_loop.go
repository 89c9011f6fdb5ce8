package node

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"

	replica "github.com/raftrix/raftrixdb/range"
)

// processRanges is one scheduler round over a batch of ranges:
//
//  1. tick and collect the Ready of every range in the batch;
//  2. write all their entries, hard states and snapshots in one batch with
//     one sync (group commit across ranges); the sync is skipped when no
//     range appends entries or changes its term or vote (what PersistReady reports);
//  3. send their messages, apply all their committed entries in one more
//     batch (not synced: the entries are durable in the log), advance.
//
// Messages of followers and candidates are sent only after the sync, so a
// vote or an append acknowledgement never leaves the node before the state
// it promises is durable; a leader's go out before it (see below).
func (n *Node) processRanges(batch []scheduledRange) {
	type pending struct {
		r  *replica.Replica
		rd raft.Ready
	}
	// In range order, each batch's keys come mostly in key order (a range's
	// log and state are one span, and ranges were made by splitting the key
	// space), and Pebble inserts a batch into its memtable starting from
	// where the previous key went.
	slices.SortFunc(batch, func(a, b scheduledRange) int { return cmp.Compare(a.rangeID, b.rangeID) })
	ps := make([]pending, 0, len(batch))
	mustSync := false
	b := n.db.NewBatch()
	defer b.Close()
	for _, sr := range batch {
		r := n.replica(sr.rangeID)
		if r == nil {
			continue
		}
		if sr.flags&flagTick != 0 {
			if msgs := r.Tick(); len(msgs) > 0 {
				n.trans.sendQuiesce(r, msgs)
			}
		}
		rd, ok := r.Ready()
		if !ok {
			continue
		}
		n.metrics.raftAppended(sr.rangeID, r.IsLeader(), rd.Entries, time.Now())
		sync, err := r.PersistReady(b, rd)
		if err != nil {
			n.fatal(fmt.Errorf("range %d: persist ready: %w", sr.rangeID, err))
		}
		mustSync = mustSync || sync
		ps = append(ps, pending{r: r, rd: rd})
	}
	if len(ps) == 0 {
		return
	}
	// A leader's appends and heartbeats go out before its own sync, so the
	// followers' fsyncs run in parallel with the leader's (as etcd does).
	// That is safe because nothing is applied, and so nothing acknowledged,
	// before this batch is synced: an entry is acknowledged only once it is
	// durable on the leader and on the followers that made the quorum.
	// Everything else (votes, append responses) must wait for the sync.
	sentEarly := make([]bool, len(ps))
	for i, p := range ps {
		if p.r.IsLeader() {
			n.trans.sendMessages(p.r, p.rd.Messages)
			sentEarly[i] = true
		}
	}
	if !b.Empty() {
		start := time.Now()
		opts := pebble.NoSync
		if mustSync {
			opts = pebble.Sync
		}
		if err := b.Commit(opts); err != nil {
			n.fatal(fmt.Errorf("commit raft batch: %w", err))
		}
		if mustSync {
			n.metrics.syncSeconds.Observe(time.Since(start).Seconds())
		}
		n.metrics.readyBatchRanges.Observe(float64(len(ps)))
	}
	// Apply every range's committed entries into one batch, committed once
	// (see replica.StagedApply).
	applyStart := time.Now()
	ab := n.db.NewIndexedBatch()
	defer ab.Close()
	staged := make([]*replica.StagedApply, len(ps))
	for i, p := range ps {
		p.r.MarkPersisted(p.rd)
		if !sentEarly[i] {
			n.trans.sendMessages(p.r, p.rd.Messages)
		}
		var err error
		if staged[i], err = p.r.StageApply(ab, &ps[i].rd); err != nil {
			n.fatal(fmt.Errorf("range %d: apply: %w", p.r.RangeID(), err))
		}
	}
	if !ab.Empty() {
		if err := ab.Commit(pebble.NoSync); err != nil {
			n.fatal(fmt.Errorf("commit apply batch: %w", err))
		}
	}
	for i, p := range ps {
		more, err := staged[i].Finish()
		if err != nil {
			n.fatal(fmt.Errorf("range %d: apply: %w", p.r.RangeID(), err))
		}
		n.metrics.raftApplied(p.r.RangeID(), p.rd.CommittedEntries, applyStart)
		n.metrics.appliedEntries.Add(float64(len(p.rd.CommittedEntries)))
		if more {
			n.sched.enqueue(p.r.RangeID(), flagReady)
		}
	}
}

// fatal stops the process on an engine error: continuing after a failed
// write could acknowledge data that is not durable.
func (n *Node) fatal(err error) {
	n.logger.Error("fatal engine error", "error", err)
	panic(err)
}

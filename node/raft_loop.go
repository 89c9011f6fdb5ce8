package node

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"

	replica "github.com/raftrix/raftrixdb/range"
)

// processRanges is one scheduler round over a batch of ranges:
//
//  1. tick and collect the Ready of every range in the batch, sending its
//     messages to other replicas at once;
//  2. write all their appends (entries, hard states, snapshots) in one
//     batch, made visible now and synced in the background (group commit
//     across ranges), and hand the appends' responses to the sync waiter,
//     which delivers them once the batch is durable (sync_waiter.go);
//  3. apply all their committed entries in one more batch (not synced: the
//     entries are durable in the log), and tell Raft they are applied.
//
// The round does not wait for its sync: the next round can append more
// entries while this one's reach the disk (Raft's asynchronous storage
// writes, see range/ready.go). What must wait for durability waits:
// a follower's acknowledgement of entries and its vote are delivered only
// after the sync, and a leader counts its own log towards a commit only
// once its own acknowledgement is delivered, so nothing is applied, and so
// nothing acknowledged to a client, before it is durable on a quorum.
func (n *Node) processRanges(batch []scheduledRange) {
	type pending struct {
		r  *replica.Replica
		rd replica.Ready
	}
	// In range order, each batch's keys come mostly in key order (a range's
	// log and state are one span, and ranges were made by splitting the key
	// space), and Pebble inserts a batch into its memtable starting from
	// where the previous key went.
	slices.SortFunc(batch, func(a, b scheduledRange) int { return cmp.Compare(a.rangeID, b.rangeID) })
	ps := make([]pending, 0, len(batch))
	mustSync := false
	b := n.db.NewBatch()
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
		n.trans.sendMessages(r, rd.Messages)
		if rd.Append != nil {
			n.metrics.raftAppended(sr.rangeID, r.IsLeader(), rd.Append.Entries, time.Now())
		}
		sync, err := r.PersistAppend(b, rd.Append)
		if err != nil {
			n.fatal(fmt.Errorf("range %d: persist append: %w", sr.rangeID, err))
		}
		mustSync = mustSync || sync
		ps = append(ps, pending{r: r, rd: rd})
	}
	if len(ps) == 0 {
		b.Close()
		return
	}
	mustSync = mustSync && !b.Empty()
	w := appendWait{start: time.Now()}
	n.commitAppends(b, mustSync, len(ps))
	if mustSync {
		w.batch = b
	} else {
		b.Close()
	}
	for _, p := range ps {
		if p.rd.Append == nil {
			continue
		}
		p.r.MarkAppended(p.rd.Append)
		if len(p.rd.Append.Responses) > 0 {
			w.deliveries = append(w.deliveries, delivery{r: p.r, msgs: p.rd.Append.Responses})
		}
	}
	if w.batch != nil || len(w.deliveries) > 0 {
		n.syncs.wait(w)
	}

	// Apply every range's committed entries into one batch, committed once
	// (see replica.StagedApply).
	applyStart := time.Now()
	ab := n.db.NewIndexedBatch()
	defer ab.Close()
	staged := make([]*replica.StagedApply, len(ps))
	for i, p := range ps {
		var err error
		if staged[i], err = p.r.StageApply(ab, p.rd.Apply); err != nil {
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
		if p.rd.Apply != nil {
			n.metrics.raftApplied(p.r.RangeID(), p.rd.Apply.Entries, applyStart)
			n.metrics.appliedEntries.Add(float64(len(p.rd.Apply.Entries)))
		}
		if more {
			n.sched.enqueue(p.r.RangeID(), flagReady)
		}
	}
}

// commitAppends commits a round's append batch: with a sync requested but
// not waited for when any append must be durable (the sync waiter waits),
// else without one. The batch is visible once this returns.
func (n *Node) commitAppends(b *pebble.Batch, mustSync bool, ranges int) {
	if b.Empty() {
		return
	}
	var err error
	if mustSync {
		n.syncPacer.roundAskedSync()
		err = n.db.ApplyNoSyncWait(b, pebble.Sync)
	} else {
		err = b.Commit(pebble.NoSync)
	}
	if err != nil {
		n.fatal(fmt.Errorf("commit raft batch: %w", err))
	}
	n.metrics.readyBatchRanges.Observe(float64(ranges))
}

// fatal stops the process on an engine error: continuing after a failed
// write could acknowledge data that is not durable.
func (n *Node) fatal(err error) {
	n.logger.Error("fatal engine error", "error", err)
	panic(err)
}

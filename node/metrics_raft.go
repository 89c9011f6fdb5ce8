package node

import (
	"sync"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// Proposal metrics. Raft proposal forwarding is off (the node forwards
// requests itself), so every entry a leader appends to its log, apart from
// the empty entry of a new term, was proposed on the leader's node. The
// raft loop reports those entries when it takes the leader's Ready
// (raftAppended) and reports applied entries (raftApplied); an entry that
// comes back with the same index and term was committed as proposed, and
// its commit latency is observed. The time a proposal waits for the
// scheduler to pick up its range, before the Ready, is not included.

// maxTrackedPerRange bounds what is remembered of a range's proposals, in
// case its entries never come back (the replica is removed first).
const maxTrackedPerRange = 4096

// proposalTracker remembers when this node's leaders appended their
// proposals, until they are applied or overwritten.
type proposalTracker struct {
	mu sync.Mutex
	// byRange holds each range's appended entries in index order.
	byRange map[uint64][]trackedEntry
}

type trackedEntry struct {
	index, term uint64
	at          time.Time
}

// raftAppended is called with the entries of a Ready that are about to be
// written; leader says the replica leads its range.
func (m *metrics) raftAppended(rangeID uint64, leader bool, ents []raftpb.Entry, now time.Time) {
	if !leader || len(ents) == 0 {
		return
	}
	t := &m.inFlight
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byRange == nil {
		t.byRange = map[uint64][]trackedEntry{}
	}
	tracked := t.byRange[rangeID]
	// Appending at an index replaces the log from there on.
	for len(tracked) > 0 && tracked[len(tracked)-1].index >= ents[0].Index {
		tracked = tracked[:len(tracked)-1]
	}
	proposed := 0
	for _, e := range ents {
		if e.Type == raftpb.EntryNormal && len(e.Data) == 0 {
			continue // a new leader's empty entry
		}
		proposed++
		if len(tracked) < maxTrackedPerRange {
			tracked = append(tracked, trackedEntry{index: e.Index, term: e.Term, at: now})
		}
	}
	m.proposals.Add(float64(proposed))
	if len(tracked) == 0 {
		delete(t.byRange, rangeID)
	} else {
		t.byRange[rangeID] = tracked
	}
}

// raftApplied is called after a range applied ents, which it started to
// apply at start: it observes the apply time and the commit latency of the
// entries this node proposed.
func (m *metrics) raftApplied(rangeID uint64, ents []raftpb.Entry, start time.Time) {
	if len(ents) == 0 {
		return
	}
	now := time.Now()
	m.applySeconds.Observe(now.Sub(start).Seconds())
	last := ents[len(ents)-1].Index
	t := &m.inFlight
	t.mu.Lock()
	tracked := t.byRange[rangeID]
	if len(tracked) == 0 || tracked[0].index > last {
		t.mu.Unlock()
		return
	}
	var latencies []float64
	i := 0
	for _, e := range ents {
		for i < len(tracked) && tracked[i].index < e.Index {
			i++ // overwritten, or applied before (e.g. by a snapshot)
		}
		if i < len(tracked) && tracked[i].index == e.Index {
			if tracked[i].term == e.Term {
				latencies = append(latencies, now.Sub(tracked[i].at).Seconds())
			}
			i++
		}
	}
	if rest := tracked[i:]; len(rest) == 0 {
		delete(t.byRange, rangeID)
	} else {
		t.byRange[rangeID] = rest
	}
	t.mu.Unlock()
	for _, l := range latencies {
		m.commitSeconds.Observe(l)
	}
}

// raftMessageSent counts a message handed to the transport.
func (m *metrics) raftMessageSent(t raftpb.MessageType) {
	if c := m.raftMsgsSentByType[t]; c != nil {
		c.Inc()
	}
}

package placement

import (
	"bytes"
	"math"
	"sort"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// NodeState is what decisions need to know about a node.
type NodeState struct {
	ID    uint64
	State pb.NodeRecord_State
	// Live: heard from recently; only live nodes receive replicas and
	// leaders. Dead: not heard from for the dead timeout; its replicas are
	// re-created elsewhere. A node can be neither (briefly silent).
	Live, Dead bool
}

// usable reports whether a node may receive replicas and leaders.
func (n NodeState) usable() bool { return n.Live && n.State == pb.NodeRecord_ACTIVE }

// ActionKind says what an Action does.
type ActionKind int

const (
	// Move adds a replica on To and removes the one on From (From 0: only
	// add, to bring a range up to its replication factor; To 0: only
	// remove, from a range with more replicas than it needs).
	Move ActionKind = iota
	// TransferLeader hands the range's leadership to the replica on To.
	TransferLeader
	// Split splits the range in the middle of its data.
	Split
)

func (k ActionKind) String() string {
	return [...]string{"move", "transfer-leader", "split"}[k]
}

// Action is one change placement asks a range's leader to make.
type Action struct {
	Kind     ActionKind
	RangeID  uint64
	From, To uint64
	Reason   string
}

// DecideConfig holds the thresholds decisions use.
type DecideConfig struct {
	// ReplicationFactor is the number of voters a range wants (3).
	ReplicationFactor int
	// SystemReplicationFactor is the number of voters the system range
	// wants when that many nodes are usable (5).
	SystemReplicationFactor int
	// SystemRangeStart is the start key of the system range.
	SystemRangeStart []byte
	// MaxRangeBytes splits a range past this size.
	MaxRangeBytes int64
	// SplitWritesPerSecond splits a range whose leader measures more writes
	// per second than this (0: never).
	SplitWritesPerSecond float64
	// MaxActions bounds the actions decided in one round.
	MaxActions int
}

// Decide returns the next actions, most urgent first: re-create replicas
// that are on dead or leaving nodes (or missing), split ranges that are too
// big or too hot, then balance replica counts and leader counts. Ranges in
// busy (a change in flight) and ranges with no known leader are left alone.
// It moves a replica only while some node is outside ±max(1, 10%) of the
// mean, so a balanced cluster sees no moves.
func Decide(cfg DecideConfig, nodes []NodeState, ranges []*Entry, busy map[uint64]bool) []Action {
	d := newDecider(cfg, nodes, ranges, busy)
	d.repair()
	d.splits()
	d.balanceReplicas()
	d.balanceLeaders()
	return d.actions
}

type decider struct {
	cfg      DecideConfig
	nodes    map[uint64]NodeState
	usable   []uint64 // sorted
	ranges   []*Entry
	busy     map[uint64]bool
	replicas map[uint64]int // node -> replica count (after decided actions)
	leaders  map[uint64]int
	actions  []Action
}

func newDecider(cfg DecideConfig, nodes []NodeState, ranges []*Entry, busy map[uint64]bool) *decider {
	d := &decider{cfg: cfg, nodes: map[uint64]NodeState{}, ranges: ranges, busy: map[uint64]bool{},
		replicas: map[uint64]int{}, leaders: map[uint64]int{}}
	for id := range busy {
		d.busy[id] = true
	}
	for _, n := range nodes {
		d.nodes[n.ID] = n
		if n.usable() {
			d.usable = append(d.usable, n.ID)
		}
	}
	sort.Slice(d.usable, func(i, j int) bool { return d.usable[i] < d.usable[j] })
	for _, e := range ranges {
		for _, r := range e.Desc.Replicas {
			d.replicas[r.NodeId]++
		}
		if e.LeaderNodeID != 0 {
			d.leaders[e.LeaderNodeID]++
		}
	}
	return d
}

func (d *decider) full() bool { return len(d.actions) >= d.cfg.MaxActions }

func (d *decider) add(a Action) {
	d.actions = append(d.actions, a)
	d.busy[a.RangeID] = true
	switch a.Kind {
	case Move:
		if a.From != 0 {
			d.replicas[a.From]--
		}
		if a.To != 0 {
			d.replicas[a.To]++
		}
	case TransferLeader:
		d.leaders[a.From]--
		d.leaders[a.To]++
	}
}

// eligible reports whether a range may be changed now.
func (d *decider) eligible(e *Entry) bool {
	return !d.busy[e.Desc.RangeId] && e.LeaderNodeID != 0 && !d.full()
}

func hasReplicaOn(e *Entry, node uint64) bool {
	for _, r := range e.Desc.Replicas {
		if r.NodeId == node {
			return true
		}
	}
	return false
}

// target picks the usable node without a replica of e that has the fewest
// replicas (ties: lowest ID), or 0.
func (d *decider) target(e *Entry) uint64 {
	best, bestCount := uint64(0), math.MaxInt
	for _, id := range d.usable {
		if hasReplicaOn(e, id) {
			continue
		}
		if c := d.replicas[id]; c < bestCount {
			best, bestCount = id, c
		}
	}
	return best
}

func (d *decider) isSystem(e *Entry) bool {
	return d.cfg.SystemRangeStart != nil && bytes.Equal(e.Desc.StartKey, d.cfg.SystemRangeStart)
}

func (d *decider) wantVoters(e *Entry) int {
	if d.cfg.SystemRangeStart != nil && bytes.Equal(e.Desc.StartKey, d.cfg.SystemRangeStart) {
		return max(d.cfg.ReplicationFactor, min(d.cfg.SystemReplicationFactor, len(d.usable)))
	}
	return d.cfg.ReplicationFactor
}

func voters(e *Entry) int {
	n := 0
	for _, r := range e.Desc.Replicas {
		if r.Type == pb.ReplicaDescriptor_VOTER {
			n++
		}
	}
	return n
}

func (d *decider) repair() {
	for _, e := range d.ranges {
		if !d.eligible(e) {
			continue
		}
		// A learner outside any change in flight is left over from a move
		// that failed half way: remove it, and the move is decided again.
		for _, r := range e.Desc.Replicas {
			if r.Type == pb.ReplicaDescriptor_LEARNER {
				d.add(Action{Kind: Move, RangeID: e.Desc.RangeId, From: r.NodeId, Reason: "leftover learner"})
				break
			}
		}
		if !d.eligible(e) {
			continue
		}
		for _, r := range e.Desc.Replicas {
			n, known := d.nodes[r.NodeId]
			if known && !n.Dead && n.State == pb.NodeRecord_ACTIVE {
				continue
			}
			reason := "node is dead"
			if known && !n.Dead {
				reason = "node is leaving"
			}
			if to := d.target(e); to != 0 {
				d.add(Action{Kind: Move, RangeID: e.Desc.RangeId, From: r.NodeId, To: to, Reason: reason})
			} else if voters(e) > d.wantVoters(e) {
				// Nowhere to move it, and the range has more replicas than it
				// needs (the system range on a shrinking cluster): drop it.
				d.add(Action{Kind: Move, RangeID: e.Desc.RangeId, From: r.NodeId, Reason: reason + ", range over-replicated"})
			}
			break // one change per range per round
		}
		if d.busy[e.Desc.RangeId] || !d.eligible(e) {
			continue
		}
		if voters(e) < d.wantVoters(e) {
			if to := d.target(e); to != 0 {
				d.add(Action{Kind: Move, RangeID: e.Desc.RangeId, To: to, Reason: "under-replicated"})
			}
		}
	}
}

func (d *decider) splits() {
	for _, e := range d.ranges {
		if !d.eligible(e) {
			continue
		}
		switch {
		case d.cfg.MaxRangeBytes > 0 && e.SizeBytes > d.cfg.MaxRangeBytes:
			d.add(Action{Kind: Split, RangeID: e.Desc.RangeId, Reason: "too big"})
		case d.cfg.SplitWritesPerSecond > 0 && e.WritesPerSecond > d.cfg.SplitWritesPerSecond:
			d.add(Action{Kind: Split, RangeID: e.Desc.RangeId, Reason: "too hot"})
		}
	}
}

// band returns the allowed deviation from mean: max(1, 10%).
func band(mean float64) float64 { return math.Max(1, 0.1*mean) }

func (d *decider) balanceReplicas() {
	if len(d.usable) < 2 {
		return
	}
	for !d.full() {
		total := 0
		for _, id := range d.usable {
			total += d.replicas[id]
		}
		mean := float64(total) / float64(len(d.usable))
		// Sources: the fullest usable nodes first; target: the emptiest.
		order := append([]uint64(nil), d.usable...)
		sort.SliceStable(order, func(i, j int) bool { return d.replicas[order[i]] > d.replicas[order[j]] })
		hi, lo := order[0], order[len(order)-1]
		if float64(d.replicas[hi]) <= mean+band(mean) && float64(d.replicas[lo]) >= mean-band(mean) {
			return
		}
		if d.replicas[hi]-d.replicas[lo] < 2 {
			return // a move would only swap who is off
		}
		moved := false
		for _, e := range d.ranges {
			if d.eligible(e) && hasReplicaOn(e, hi) && !hasReplicaOn(e, lo) {
				d.add(Action{Kind: Move, RangeID: e.Desc.RangeId, From: hi, To: lo, Reason: "balance replicas"})
				moved = true
				break
			}
		}
		if !moved {
			return
		}
	}
}

func (d *decider) balanceLeaders() {
	if len(d.usable) < 2 {
		return
	}
	for !d.full() {
		total := 0
		for _, id := range d.usable {
			total += d.leaders[id]
		}
		mean := float64(total) / float64(len(d.usable))
		order := append([]uint64(nil), d.usable...)
		sort.SliceStable(order, func(i, j int) bool { return d.leaders[order[i]] > d.leaders[order[j]] })
		if float64(d.leaders[order[0]]) <= mean+band(mean) && float64(d.leaders[order[len(order)-1]]) >= mean-band(mean) {
			return
		}
		// Take a leadership from the node with the most that can give one
		// to a replica holder with fewer (the top node may hold no range
		// that the bottom ones share).
		moved := false
		for _, hi := range order {
			if float64(d.leaders[hi]) <= mean {
				break
			}
			if d.transferFrom(hi) {
				moved = true
				break
			}
		}
		if !moved {
			return
		}
	}
}

// transferFrom moves one of hi's leaderships to the usable voter of that
// range with the fewest leaders, if that helps.
func (d *decider) transferFrom(hi uint64) bool {
	for _, e := range d.ranges {
		if !d.eligible(e) || e.LeaderNodeID != hi || d.isSystem(e) {
			// The system range's leader is the placement leader: moving it
			// for balance would restart placement's grace period each time.
			continue
		}
		best, bestCount := uint64(0), d.leaders[hi]-1
		for _, r := range e.Desc.Replicas {
			if n, ok := d.nodes[r.NodeId]; ok && n.usable() && r.Type == pb.ReplicaDescriptor_VOTER && r.NodeId != hi && d.leaders[r.NodeId] < bestCount {
				best, bestCount = r.NodeId, d.leaders[r.NodeId]
			}
		}
		if best != 0 {
			d.add(Action{Kind: TransferLeader, RangeID: e.Desc.RangeId, From: hi, To: best, Reason: "balance leaders"})
			return true
		}
	}
	return false
}

package nemesis

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/raftrix/raftrixdb/internal/faultcluster"
	"github.com/raftrix/raftrixdb/node"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// invariants samples the replicas of a running cluster and remembers what it
// saw, to check across nodes and over time that:
//   - replicas of a range at the same applied index hold the same state
//     (equal StateHash);
//   - a committed log position never changes its term (the committed prefix
//     never changes, even across crashes that lose unsynced writes);
//   - a range has at most one leader per term;
//   - a node's range descriptors never overlap, and nodes agree on a
//     descriptor of the same range and generation;
//   - once replicas converge, the newest descriptors of all ranges together
//     tile the key space and every replica they name exists.
type invariants struct {
	c *faultcluster.Cluster

	mu         sync.Mutex
	hashes     map[uint64]map[uint64]seen // range -> applied index -> hash
	terms      map[uint64]map[uint64]seen // range -> log index -> term
	leaders    map[uint64]map[uint64]seen // range -> term -> leader node
	descs      map[[2]uint64]*pb.RangeDescriptor
	checkedTo  map[[2]uint64]uint64  // {node, range} -> highest committed index checked
	incarnate  map[uint64]*node.Node // the node last sampled per ID, to notice restarts
	violations []string
	reported   map[[4]uint64]bool // {kind, range, key, value} already reported
	samples    int
	// hashChecks and termChecks count comparisons with an observation from
	// another node, to show the checks are not vacuous.
	hashChecks, termChecks int
	// quiesced counts replicas seen quiesced, to show whether a run
	// exercised quiescence.
	quiesced int
	start    time.Time
}

// seen is a value observed on a node at a time.
type seen struct {
	v    uint64
	node uint64
	at   time.Duration
}

// recheckWindow is how far below the highest index checked a sample reads
// the log again, to catch a committed suffix rewritten after a crash.
const recheckWindow = 64

func newInvariants(c *faultcluster.Cluster, start time.Time) *invariants {
	return &invariants{
		c:         c,
		hashes:    map[uint64]map[uint64]seen{},
		terms:     map[uint64]map[uint64]seen{},
		leaders:   map[uint64]map[uint64]seen{},
		descs:     map[[2]uint64]*pb.RangeDescriptor{},
		checkedTo: map[[2]uint64]uint64{},
		incarnate: map[uint64]*node.Node{},
		reported:  map[[4]uint64]bool{},
		start:     start,
	}
}

// run samples every interval until ctx ends.
func (iv *invariants) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			iv.sample(ctx)
		}
	}
}

// firstReport reports whether a conflict is new; a conflict is seen again
// at every sample until the observations change.
func (iv *invariants) firstReport(kind, rangeID, key, value uint64) bool {
	k := [4]uint64{kind, rangeID, key, value}
	if iv.reported[k] {
		return false
	}
	iv.reported[k] = true
	return true
}

func (iv *invariants) violate(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if len(iv.violations) < 50 && !slices.Contains(iv.violations, msg) {
		iv.violations = append(iv.violations, msg)
	}
}

// record notes observation s for key k of range r. It returns the earlier
// observation of k, if any, and whether it differs; cross reports that the
// earlier observation came from another node.
func record(m map[uint64]map[uint64]seen, r, k uint64, s seen) (prev seen, differs, cross bool) {
	byKey := m[r]
	if byKey == nil {
		byKey = map[uint64]seen{}
		m[r] = byKey
	}
	if prev, ok := byKey[k]; ok {
		return prev, prev.v != s.v, prev.node != s.node
	}
	byKey[k] = s
	return seen{}, false, false
}

// sample reads every running node once.
func (iv *invariants) sample(ctx context.Context) {
	for _, id := range iv.c.NodeIDs() {
		iv.c.WithNode(id, func(n *node.Node) { iv.sampleNode(id, n) })
		iv.sampleLeaders(ctx, id)
	}
	iv.mu.Lock()
	iv.samples++
	iv.mu.Unlock()
}

func (iv *invariants) sampleNode(id uint64, n *node.Node) {
	at := time.Since(iv.start).Round(time.Millisecond)
	hashes, err := n.StateHashes()
	descs := n.RangeDescriptors()
	type termsOf struct {
		rangeID uint64
		from    uint64
		its     []indexTerm
		err     error
	}
	var logs []termsOf
	iv.mu.Lock()
	if iv.incarnate[id] != n {
		// Restarted: read its whole log again, since a crash must not
		// have changed any committed entry.
		iv.incarnate[id] = n
		for k := range iv.checkedTo {
			if k[0] == id {
				delete(iv.checkedTo, k)
			}
		}
	}
	checked := map[uint64]uint64{}
	for _, d := range descs {
		checked[d.RangeId] = iv.checkedTo[[2]uint64{id, d.RangeId}]
	}
	iv.mu.Unlock()
	for _, d := range descs {
		from := checked[d.RangeId]
		if from > recheckWindow {
			from -= recheckWindow
		} else {
			from = 0
		}
		its, err := n.CommittedTerms(d.RangeId, from, 1<<14)
		t := termsOf{rangeID: d.RangeId, from: from, err: err}
		for _, it := range its {
			t.its = append(t.its, indexTerm{it.Index, it.Term})
		}
		logs = append(logs, t)
	}

	iv.mu.Lock()
	defer iv.mu.Unlock()
	if err != nil {
		iv.violate("node %d: state hashes: %v", id, err)
	}
	for rangeID, h := range hashes {
		s := seen{v: h.Hash, node: id, at: at}
		prev, diverged, cross := record(iv.hashes, rangeID, h.Applied, s)
		if cross {
			iv.hashChecks++
		}
		if diverged && iv.firstReport(1, rangeID, h.Applied, h.Hash) {
			iv.violate("divergent state: range %d at applied index %d has hash %016x on node %d (at %v) but %016x on node %d (at %v)",
				rangeID, h.Applied, prev.v, prev.node, prev.at, h.Hash, id, at)
		}
	}
	for _, l := range logs {
		if l.err != nil {
			iv.violate("node %d range %d: committed terms: %v", id, l.rangeID, l.err)
			continue
		}
		for _, it := range l.its {
			s := seen{v: it.term, node: id, at: at}
			prev, changed, cross := record(iv.terms, l.rangeID, it.index, s)
			if cross {
				iv.termChecks++
			}
			if changed && iv.firstReport(2, l.rangeID, it.index, it.term) {
				iv.violate("committed log changed: range %d index %d had term %d on node %d (at %v) but term %d on node %d (at %v)",
					l.rangeID, it.index, prev.v, prev.node, prev.at, it.term, id, at)
			}
			key := [2]uint64{id, l.rangeID}
			iv.checkedTo[key] = max(iv.checkedTo[key], it.index)
		}
	}
	iv.checkDescriptorsLocked(id, descs)
}

type indexTerm struct{ index, term uint64 }

// checkDescriptorsLocked checks one node's descriptors (ordered by start
// key) and compares them with other nodes'. A node's replicas must never
// overlap, but may leave gaps: a node that caught up on the left-hand side
// of a split by a snapshot lacks the right-hand side until its leader sends
// it one, and with moves a node holds only some ranges. Coverage of the key
// space is checked across the cluster once replicas converge
// (checkClusterCoverage).
func (iv *invariants) checkDescriptorsLocked(id uint64, descs []*pb.RangeDescriptor) {
	for i := 1; i < len(descs); i++ {
		prev, d := descs[i-1], descs[i]
		if len(prev.EndKey) == 0 || bytes.Compare(prev.EndKey, d.StartKey) > 0 {
			iv.violate("node %d: range %d ends at %q but the next range %d starts at %q (overlap)",
				id, prev.RangeId, prev.EndKey, d.RangeId, d.StartKey)
		}
	}
	for _, d := range descs {
		key := [2]uint64{d.RangeId, d.Generation}
		if prev, ok := iv.descs[key]; ok && !proto.Equal(prev, d) {
			iv.violate("range %d generation %d has two descriptors: %v and %v (node %d)", d.RangeId, d.Generation, prev, d, id)
		} else if !ok {
			iv.descs[key] = d
		}
	}
}

// sampleLeaders records which node claims leadership of which range in which
// term.
func (iv *invariants) sampleLeaders(ctx context.Context, id uint64) {
	var resp *pb.ListRangesResponse
	var err error
	// Hold the node while asking it, so that Kill never stops it in the
	// middle of the request (see TestStopWaitsForRequests).
	running := iv.c.WithNode(id, func(*node.Node) {
		actx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		resp, err = iv.c.Admin(id).ListRanges(actx, &pb.ListRangesRequest{})
	})
	if !running || err != nil {
		return // stopped, or frozen by a crash
	}
	at := time.Since(iv.start).Round(time.Millisecond)
	iv.mu.Lock()
	defer iv.mu.Unlock()
	for _, ri := range resp.Ranges {
		if ri.Quiesced {
			iv.quiesced++
		}
		if ri.RaftState != "StateLeader" {
			continue
		}
		rangeID := ri.Descriptor_.RangeId
		if prev, two, _ := record(iv.leaders, rangeID, ri.Term, seen{v: id, node: id, at: at}); two && iv.firstReport(3, rangeID, ri.Term, id) {
			iv.violate("two leaders: range %d term %d led by node %d (at %v) and node %d (at %v)",
				rangeID, ri.Term, prev.node, prev.at, id, at)
		}
	}
}

// converge waits until every replica of every range reports the same applied
// index (nothing is being written any more), then samples once more so the
// hashes at that index are compared. It returns ranges that did not converge.
func (iv *invariants) converge(ctx context.Context) []string {
	var lagging []string
	var laggingIDs []uint64
	for ctx.Err() == nil {
		lagging, laggingIDs = lagging[:0], laggingIDs[:0]
		applied := map[uint64]map[uint64]uint64{} // range -> node -> applied
		replicas := map[uint64]int{}              // range -> replicas in its descriptor
		for _, id := range iv.c.NodeIDs() {
			iv.c.WithNode(id, func(n *node.Node) {
				hs, err := n.StateHashes()
				if err != nil {
					return
				}
				for _, d := range n.RangeDescriptors() {
					replicas[d.RangeId] = max(replicas[d.RangeId], len(d.Replicas))
				}
				for r, h := range hs {
					if applied[r] == nil {
						applied[r] = map[uint64]uint64{}
					}
					applied[r][id] = h.Applied
				}
			})
		}
		for r, byNode := range applied {
			var first uint64
			same := true
			for _, a := range byNode {
				if first == 0 {
					first = a
				}
				same = same && a == first
			}
			if !same || len(byNode) < replicas[r] {
				lagging = append(lagging, fmt.Sprintf("range %d applied %v", r, byNode))
				laggingIDs = append(laggingIDs, r)
			}
		}
		if len(lagging) == 0 {
			iv.sample(ctx)
			iv.checkClusterCoverage()
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	iv.sample(context.Background())
	return append(lagging, iv.describeRanges(laggingIDs)...)
}

// describeRanges is the Raft state of every replica of the lagging ranges,
// for the report: who leads, at which term, and what each replica has
// committed and applied.
func (iv *invariants) describeRanges(lagging []uint64) []string {
	var out []string
	for _, id := range iv.c.NodeIDs() {
		var resp *pb.ListRangesResponse
		iv.c.WithNode(id, func(*node.Node) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			resp, _ = iv.c.Admin(id).ListRanges(ctx, &pb.ListRangesRequest{})
		})
		for _, ri := range resp.GetRanges() {
			if !slices.Contains(lagging, ri.Descriptor_.RangeId) {
				continue
			}
			out = append(out, fmt.Sprintf("node %d range %d: %s term %d leader %d commit %d applied %d quiesced %v config %s descriptor %v",
				id, ri.Descriptor_.RangeId, ri.RaftState, ri.Term, ri.LeaderNodeId, ri.CommitIndex, ri.AppliedIndex, ri.Quiesced, ri.RaftConfig, ri.Descriptor_))
		}
	}
	return out
}

// checkClusterCoverage checks, once replicas have converged, that the
// newest descriptor of every range (the highest generation any node holds)
// tiles the key space with no gap or overlap, and that every node the
// descriptor names holds the range. Per-node coverage cannot show this when
// replicas move: a node then holds only some ranges.
func (iv *invariants) checkClusterCoverage() {
	newest := map[uint64]*pb.RangeDescriptor{}
	held := map[uint64]map[uint64]bool{} // range -> nodes holding a replica
	for _, id := range iv.c.NodeIDs() {
		iv.c.WithNode(id, func(n *node.Node) {
			for _, d := range n.RangeDescriptors() {
				if cur := newest[d.RangeId]; cur == nil || d.Generation > cur.Generation {
					newest[d.RangeId] = d
				}
				if held[d.RangeId] == nil {
					held[d.RangeId] = map[uint64]bool{}
				}
				held[d.RangeId][id] = true
			}
		})
	}
	descs := make([]*pb.RangeDescriptor, 0, len(newest))
	for _, d := range newest {
		descs = append(descs, d)
	}
	slices.SortFunc(descs, func(a, b *pb.RangeDescriptor) int { return bytes.Compare(a.StartKey, b.StartKey) })
	iv.mu.Lock()
	defer iv.mu.Unlock()
	if len(descs) == 0 {
		iv.violate("cluster: no node holds any range")
		return
	}
	if len(descs[0].StartKey) != 0 {
		iv.violate("cluster: first range %d starts at %q, not at the start of the key space", descs[0].RangeId, descs[0].StartKey)
	}
	for i := 1; i < len(descs); i++ {
		prev, d := descs[i-1], descs[i]
		if len(prev.EndKey) == 0 || !bytes.Equal(prev.EndKey, d.StartKey) {
			iv.violate("cluster: range %d (generation %d) ends at %q but the next range %d (generation %d) starts at %q (gap or overlap)",
				prev.RangeId, prev.Generation, prev.EndKey, d.RangeId, d.Generation, d.StartKey)
		}
	}
	if last := descs[len(descs)-1]; len(last.EndKey) != 0 {
		iv.violate("cluster: last range %d ends at %q, not at the end of the key space", last.RangeId, last.EndKey)
	}
	for _, d := range descs {
		for _, r := range d.Replicas {
			if !held[d.RangeId][r.NodeId] {
				iv.violate("cluster: range %d generation %d names node %d, which holds no replica of it", d.RangeId, d.Generation, r.NodeId)
			}
		}
	}
}

func (iv *invariants) result() (violations []string, samples, hashChecks, termChecks, quiesced int) {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	return append([]string(nil), iv.violations...), iv.samples, iv.hashChecks, iv.termChecks, iv.quiesced
}

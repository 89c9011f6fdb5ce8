package placement

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// randomEnv returns a random cluster: 3 to 8 nodes in any state, ranges of
// 1 to 5 replicas (some on unknown nodes, some learners), leaders known or
// not, some busy, sizes and loads around the split thresholds.
func randomEnv(rng *rand.Rand) *decideEnv {
	e := newDecideEnv()
	e.cfg = DecideConfig{ReplicationFactor: 3, SystemReplicationFactor: 5, SystemRangeStart: []byte("zz"),
		MaxRangeBytes: 1000, SplitWritesPerSecond: 100, MaxActions: rng.IntN(20)}
	nNodes := 3 + rng.IntN(6)
	for id := uint64(1); id <= uint64(nNodes); id++ {
		n := &NodeState{ID: id, State: pb.NodeRecord_ACTIVE, Live: true}
		switch rng.IntN(8) {
		case 0:
			n.Live, n.Dead = false, true
		case 1:
			n.Live = false
		case 2:
			n.State = pb.NodeRecord_DECOMMISSIONING
		}
		e.nodes[id] = n
	}
	nRanges := 1 + rng.IntN(60)
	for id := uint64(1); id <= uint64(nRanges); id++ {
		// Node nNodes+1 is unknown to placement.
		perm := rng.Perm(nNodes + 1)
		k := 1 + rng.IntN(5)
		var voters, learners []uint64
		for _, p := range perm[:min(k, len(perm))] {
			if rng.IntN(10) == 0 {
				learners = append(learners, uint64(p+1))
			} else {
				voters = append(voters, uint64(p+1))
			}
		}
		start, end := fmt.Sprintf("k%03d", id), fmt.Sprintf("k%03d", id+1)
		if id == uint64(nRanges) {
			start, end = "zz", ""
		}
		ent := &Entry{Desc: newDesc(id, start, end, voters, learners, 1),
			SizeBytes: int64(rng.IntN(1500)), WritesPerSecond: float64(rng.IntN(150))}
		if len(voters) > 0 && rng.IntN(6) != 0 {
			ent.LeaderNodeID = voters[rng.IntN(len(voters))]
		}
		if rng.IntN(6) == 0 {
			e.busy[id] = true
		}
		e.put(ent)
	}
	return e
}

// TestDecideRandomInvariants runs Decide on random cluster states and checks
// the invariants every decision must respect (checkActions).
func TestDecideRandomInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		e := randomEnv(rng)
		acts := Decide(e.cfg, e.nodeStates(), e.ranges, e.busy)
		if errs := checkActions(e.cfg, e.nodeStates(), e.ranges, e.busy, acts); len(errs) > 0 {
			t.Fatalf("state %d:\n%s\n%s\nactions:\n%s\nviolations: %v", i, e.formatNodes(), e.formatRanges(), formatActions(acts), errs)
		}
	}
}

// TestDecideRandomConvergence starts from random clusters where every range
// has a leader and at most rf replicas, and applies Decide's actions until
// there are none. It must get there, every range must then have rf voters,
// none on a dead, leaving or unknown node (a node that is only silent keeps
// its replicas), and replica counts must be within the band. Leader
// counts are only logged: see testdata/decide/leaders_stuck.txt.
func TestDecideRandomConvergence(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	leaderMisses := 0
	const runs = 300
	for i := range runs {
		e := randomEnv(rng)
		e.cfg.MaxActions = 1 + rng.IntN(10)
		e.cfg.MaxRangeBytes, e.cfg.SplitWritesPerSecond = 0, 0
		e.cfg.SystemRangeStart = nil
		e.busy = map[uint64]bool{}
		usable := 0
		for _, n := range e.nodes {
			if n.usable() {
				usable++
			}
		}
		if usable < e.cfg.ReplicationFactor {
			continue
		}
		for _, r := range e.ranges {
			r.Desc = newDesc(r.Desc.RangeId, string(r.Desc.StartKey), string(r.Desc.EndKey),
				replicaNodes(r)[:min(3, len(r.Desc.Replicas))], nil, 1)
			r.LeaderNodeID = r.Desc.Replicas[0].NodeId
		}
		before := e.formatNodes() + "\n" + e.formatRanges()
		rounds := 0
		for ; rounds < 500; rounds++ {
			acts := Decide(e.cfg, e.nodeStates(), e.ranges, nil)
			if errs := checkActions(e.cfg, e.nodeStates(), e.ranges, nil, acts); len(errs) > 0 {
				t.Fatalf("run %d round %d: %v\nstart:\n%s", i, rounds, errs, before)
			}
			if len(acts) == 0 {
				break
			}
			for _, a := range acts {
				e.apply(a)
			}
		}
		if rounds == 500 {
			t.Fatalf("run %d: no convergence in 500 rounds\nstart:\n%s", i, before)
		}
		for _, r := range e.ranges {
			if len(r.Desc.Replicas) != e.cfg.ReplicationFactor {
				t.Errorf("run %d: %s has %d replicas\nstart:\n%s", i, formatEntry(r), len(r.Desc.Replicas), before)
			}
			for _, rd := range r.Desc.Replicas {
				if n := e.nodes[rd.NodeId]; n == nil || n.Dead || n.State != pb.NodeRecord_ACTIVE {
					t.Errorf("run %d: %s keeps a replica on n%d\nstart:\n%s", i, formatEntry(r), rd.NodeId, before)
				}
			}
		}
		replicas, leaders, usableIDs := e.counts()
		if _, out := outsideBand(replicas, usableIDs); len(out) > 0 {
			t.Errorf("run %d: replicas outside the band on %v\n%s\nstart:\n%s", i, out, e.formatCounts(), before)
		}
		if _, out := outsideBand(leaders, usableIDs); len(out) > 0 {
			leaderMisses++
		}
	}
	t.Logf("%d of %d runs ended with leaders outside the band", leaderMisses, runs)
}

func replicaNodes(r *Entry) []uint64 {
	var out []uint64
	for _, rd := range r.Desc.Replicas {
		out = append(out, rd.NodeId)
	}
	return out
}

func (e *decideEnv) formatNodes() string {
	var lines []string
	for _, n := range e.nodeStates() {
		lines = append(lines, formatNode(n))
	}
	return strings.Join(lines, "\n")
}

package placement

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// TestDecide walks testdata/decide/*.txt. Each script builds a cluster
// state (nodes, ranges, config, busy ranges), runs Decide on it, and can
// apply the decided actions to the state and decide again. Every decide
// also checks the invariants that hold for any state (see checkActions), so
// a script fails on a violation even if its expected output was rewritten.
// Commands:
//
//	node id=<n>[,<n>...] [state=active|decommissioning|decommissioned]
//	     [live[=<bool>]] [dead[=<bool>]]
//	    declares or updates nodes (default: active, live, not dead).
//	range id=<n> replicas=<n>,... [learners=<n>,...] [leader=<n>] [start=<key>]
//	     [end=<key>] [size=<bytes>] [wps=<f>] [gen=<g>]
//	    declares or replaces a range (default span [r<id>, r<id+1>)).
//	gen-ranges count=<n> replicas=<n>,... [first-id=<n>] [size=<b>] [leaders=rr|<n>]
//	    declares count ranges with the same replicas and keys k001, k002,
//	    ...; leaders round-robin over the replicas (default) or all on one.
//	config [rf=] [system-rf=] [system-start=] [max-bytes=] [split-wps=] [max-actions=]
//	busy [ids=<n>,...]      the ranges with a change in flight (none if no ids)
//	decide                  runs Decide and prints its actions
//	apply                   applies the last decided actions to the state and
//	                        prints how many of each kind were applied so far
//	converge [max-rounds=] [quiet]
//	                        decide+apply until no actions; prints each round
//	                        (quiet: only whether it converged)
//	counts                  replicas and leaders per node, mean and band
//	ranges                  the ranges
//	reset                   forgets everything (config back to the defaults)
//	check-balanced          whether every usable node is within the band
//	check-replication       whether every range has rf voters (the system
//	                        range: min(system-rf, usable nodes), at least
//	                        rf), all on active nodes that are not dead, and
//	                        no learners
//	skip                    skips the rest of the file (t.Skip): a known bug,
//	                        described in the command's input; the script
//	                        holds the right output, and runs (and fails)
//	                        with PLACEMENT_KNOWN_BUGS=1 in the environment
func TestDecide(t *testing.T) {
	datadriven.Walk(t, "testdata/decide", func(t *testing.T, path string) {
		env := newDecideEnv()
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			return env.handle(t, d)
		})
	})
}

type decideEnv struct {
	cfg     DecideConfig
	nodes   map[uint64]*NodeState
	ranges  []*Entry // ordered by start key, as Directory.Entries returns them
	busy    map[uint64]bool
	decided []Action
	applied map[ActionKind]int // since the start or the last reset
}

func newDecideEnv() *decideEnv {
	return &decideEnv{
		cfg:     DecideConfig{ReplicationFactor: 3, SystemReplicationFactor: 5, MaxActions: 10},
		nodes:   map[uint64]*NodeState{},
		busy:    map[uint64]bool{},
		applied: map[ActionKind]int{},
	}
}

func (e *decideEnv) handle(t *testing.T, d *datadriven.TestData) string {
	switch d.Cmd {
	case "node":
		return e.cmdNode(t, d)
	case "range":
		return e.cmdRange(t, d)
	case "gen-ranges":
		return e.cmdGenRanges(t, d)
	case "config":
		return e.cmdConfig(t, d)
	case "busy":
		e.busy = map[uint64]bool{}
		for _, id := range scanIDs(t, d, "ids") {
			e.busy[id] = true
		}
		return fmt.Sprintf("busy: %v", sortedKeys(e.busy))
	case "decide":
		e.decided = e.decide(t, d)
		return formatActions(e.decided)
	case "apply":
		for _, a := range e.decided {
			e.apply(a)
		}
		n := len(e.decided)
		e.decided = nil
		return fmt.Sprintf("applied %d actions; so far: %s", n, formatKinds(e.applied))
	case "converge":
		return e.cmdConverge(t, d)
	case "counts":
		return e.formatCounts()
	case "ranges":
		return e.formatRanges()
	case "reset":
		*e = *newDecideEnv()
		return "ok"
	case "check-balanced":
		return e.checkBalanced()
	case "check-replication":
		return e.checkReplication()
	case "skip":
		return skipKnownBugScript(t, d)
	default:
		d.Fatalf(t, "unknown command %q", d.Cmd)
		return ""
	}
}

// skipKnownBugScript skips the rest of a script that shows a known bug,
// unless PLACEMENT_KNOWN_BUGS is set; the reason is the command's input.
func skipKnownBugScript(t *testing.T, d *datadriven.TestData) string {
	if os.Getenv("PLACEMENT_KNOWN_BUGS") == "" {
		t.Skip("bug: " + strings.Join(strings.Fields(d.Input), " ") + " (set PLACEMENT_KNOWN_BUGS=1 to run)")
	}
	return "known bug"
}

// scanIDs reads a list of IDs given as key=1,2,3 or key=(1, 2, 3).
func scanIDs(t *testing.T, d *datadriven.TestData, key string) []uint64 {
	t.Helper()
	arg, ok := d.Arg(key)
	if !ok {
		return nil
	}
	var out []uint64
	for _, v := range arg.Vals {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			id, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				d.Fatalf(t, "%s: %v", key, err)
			}
			out = append(out, id)
		}
	}
	return out
}

// scanFlag reads a flag given as key, key=true or key=false.
func scanFlag(t *testing.T, d *datadriven.TestData, key string, def bool) bool {
	t.Helper()
	arg, ok := d.Arg(key)
	if !ok {
		return def
	}
	if len(arg.Vals) == 0 {
		return true
	}
	b, err := strconv.ParseBool(arg.SingleVal(t))
	if err != nil {
		d.Fatalf(t, "%s: %v", key, err)
	}
	return b
}

var nodeStates = map[string]pb.NodeRecord_State{
	"active":          pb.NodeRecord_ACTIVE,
	"decommissioning": pb.NodeRecord_DECOMMISSIONING,
	"decommissioned":  pb.NodeRecord_DECOMMISSIONED,
}

func (e *decideEnv) cmdNode(t *testing.T, d *datadriven.TestData) string {
	var out []string
	for _, id := range scanIDs(t, d, "id") {
		n, ok := e.nodes[id]
		if !ok {
			n = &NodeState{ID: id, State: pb.NodeRecord_ACTIVE, Live: true}
			e.nodes[id] = n
		}
		if d.HasArg("state") {
			var s string
			d.ScanArgs(t, "state", &s)
			st, ok := nodeStates[s]
			if !ok {
				d.Fatalf(t, "unknown node state %q", s)
			}
			n.State = st
		}
		n.Live = scanFlag(t, d, "live", n.Live)
		n.Dead = scanFlag(t, d, "dead", n.Dead)
		out = append(out, formatNode(*n))
	}
	if len(out) == 0 {
		d.Fatalf(t, "node needs id=")
	}
	return strings.Join(out, "\n")
}

func formatNode(n NodeState) string {
	return fmt.Sprintf("n%d: %s live=%t dead=%t", n.ID, strings.ToLower(n.State.String()), n.Live, n.Dead)
}

func newDesc(id uint64, start, end string, voters, learners []uint64, gen uint64) *pb.RangeDescriptor {
	desc := &pb.RangeDescriptor{RangeId: id, StartKey: []byte(start), EndKey: []byte(end), Generation: gen, NextReplicaId: 1}
	for _, n := range voters {
		desc.Replicas = append(desc.Replicas, &pb.ReplicaDescriptor{NodeId: n, ReplicaId: desc.NextReplicaId})
		desc.NextReplicaId++
	}
	for _, n := range learners {
		desc.Replicas = append(desc.Replicas, &pb.ReplicaDescriptor{NodeId: n, ReplicaId: desc.NextReplicaId, Type: pb.ReplicaDescriptor_LEARNER})
		desc.NextReplicaId++
	}
	return desc
}

func (e *decideEnv) cmdRange(t *testing.T, d *datadriven.TestData) string {
	var id uint64
	d.ScanArgs(t, "id", &id)
	start, end := fmt.Sprintf("r%03d", id), fmt.Sprintf("r%03d", id+1)
	d.MaybeScanArgs(t, "start", &start)
	d.MaybeScanArgs(t, "end", &end)
	gen := uint64(1)
	d.MaybeScanArgs(t, "gen", &gen)
	ent := &Entry{Desc: newDesc(id, start, end, scanIDs(t, d, "replicas"), scanIDs(t, d, "learners"), gen)}
	d.MaybeScanArgs(t, "leader", &ent.LeaderNodeID)
	d.MaybeScanArgs(t, "size", &ent.SizeBytes)
	d.MaybeScanArgs(t, "wps", &ent.WritesPerSecond)
	e.put(ent)
	return formatEntry(ent)
}

func (e *decideEnv) cmdGenRanges(t *testing.T, d *datadriven.TestData) string {
	var count int
	d.ScanArgs(t, "count", &count)
	first := uint64(1)
	d.MaybeScanArgs(t, "first-id", &first)
	var size int64
	d.MaybeScanArgs(t, "size", &size)
	leaders := "rr"
	d.MaybeScanArgs(t, "leaders", &leaders)
	replicas := scanIDs(t, d, "replicas")
	for i := range count {
		id := first + uint64(i)
		ent := &Entry{Desc: newDesc(id, fmt.Sprintf("k%03d", id), fmt.Sprintf("k%03d", id+1), replicas, nil, 1), SizeBytes: size}
		if leaders == "rr" {
			ent.LeaderNodeID = replicas[i%len(replicas)]
		} else {
			l, err := strconv.ParseUint(leaders, 10, 64)
			if err != nil {
				d.Fatalf(t, "leaders: %v", err)
			}
			ent.LeaderNodeID = l
		}
		e.put(ent)
	}
	return fmt.Sprintf("%d ranges", count)
}

// put inserts or replaces a range, keeping e.ranges ordered by start key.
func (e *decideEnv) put(ent *Entry) {
	e.ranges = slices.DeleteFunc(e.ranges, func(x *Entry) bool { return x.Desc.RangeId == ent.Desc.RangeId })
	e.ranges = append(e.ranges, ent)
	sort.SliceStable(e.ranges, func(i, j int) bool { return entryLess(e.ranges[i], e.ranges[j]) })
}

func (e *decideEnv) cmdConfig(t *testing.T, d *datadriven.TestData) string {
	d.MaybeScanArgs(t, "rf", &e.cfg.ReplicationFactor)
	d.MaybeScanArgs(t, "system-rf", &e.cfg.SystemReplicationFactor)
	if d.HasArg("system-start") {
		var s string
		d.ScanArgs(t, "system-start", &s)
		e.cfg.SystemRangeStart = []byte(s)
	}
	d.MaybeScanArgs(t, "max-bytes", &e.cfg.MaxRangeBytes)
	d.MaybeScanArgs(t, "split-wps", &e.cfg.SplitWritesPerSecond)
	d.MaybeScanArgs(t, "max-actions", &e.cfg.MaxActions)
	c := e.cfg
	return fmt.Sprintf("rf=%d system-rf=%d system-start=%q max-bytes=%d split-wps=%g max-actions=%d",
		c.ReplicationFactor, c.SystemReplicationFactor, c.SystemRangeStart, c.MaxRangeBytes, c.SplitWritesPerSecond, c.MaxActions)
}

func (e *decideEnv) nodeStates() []NodeState {
	var out []NodeState
	for _, id := range sortedKeys(e.nodes) {
		out = append(out, *e.nodes[id])
	}
	return out
}

// decide runs Decide on the current state and checks its invariants.
func (e *decideEnv) decide(t *testing.T, d *datadriven.TestData) []Action {
	t.Helper()
	busy := map[uint64]bool{}
	for id := range e.busy {
		busy[id] = true
	}
	acts := Decide(e.cfg, e.nodeStates(), e.ranges, busy)
	if len(busy) != len(e.busy) {
		t.Errorf("%s: Decide modified the busy map", d.Pos)
	}
	for _, err := range checkActions(e.cfg, e.nodeStates(), e.ranges, e.busy, acts) {
		t.Errorf("%s: %v", d.Pos, err)
	}
	return acts
}

// checkActions returns the violations of what any decision must respect:
// at most MaxActions, at most one action per range, none on a busy or
// leaderless range, moves only to usable nodes without a replica of the
// range and from nodes with one, removals (To 0) only from ranges with more
// than rf replicas, transfers only from the leader to a usable voter.
func checkActions(cfg DecideConfig, nodes []NodeState, ranges []*Entry, busy map[uint64]bool, acts []Action) []error {
	var errs []error
	if len(acts) > cfg.MaxActions {
		errs = append(errs, fmt.Errorf("%d actions, more than max-actions=%d", len(acts), cfg.MaxActions))
	}
	byNode := map[uint64]NodeState{}
	for _, n := range nodes {
		byNode[n.ID] = n
	}
	byID := map[uint64]*Entry{}
	for _, r := range ranges {
		byID[r.Desc.RangeId] = r
	}
	seen := map[uint64]bool{}
	for _, a := range acts {
		r := byID[a.RangeID]
		switch {
		case r == nil:
			errs = append(errs, fmt.Errorf("%s on unknown range %d", a.Kind, a.RangeID))
			continue
		case seen[a.RangeID]:
			errs = append(errs, fmt.Errorf("two actions on range %d", a.RangeID))
		case busy[a.RangeID]:
			errs = append(errs, fmt.Errorf("%s on busy range %d", a.Kind, a.RangeID))
		case r.LeaderNodeID == 0:
			errs = append(errs, fmt.Errorf("%s on leaderless range %d", a.Kind, a.RangeID))
		}
		seen[a.RangeID] = true
		switch a.Kind {
		case Move:
			if a.To == 0 {
				// Only a removal: of a leftover learner, or of a voter from a
				// range with more voters than it needs.
				if a.From == 0 || (!isLearnerOn(r, a.From) && voters(r) <= cfg.ReplicationFactor) {
					errs = append(errs, fmt.Errorf("removal from range %d (%d replicas) on node %d", a.RangeID, len(r.Desc.Replicas), a.From))
				}
			} else if !byNode[a.To].usable() {
				errs = append(errs, fmt.Errorf("move of range %d to node %d, which is not usable", a.RangeID, a.To))
			}
			if hasReplicaOn(r, a.To) {
				errs = append(errs, fmt.Errorf("move of range %d to node %d, which already has a replica", a.RangeID, a.To))
			}
			if a.From != 0 && !hasReplicaOn(r, a.From) {
				errs = append(errs, fmt.Errorf("move of range %d from node %d, which has no replica", a.RangeID, a.From))
			}
		case TransferLeader:
			if a.From != r.LeaderNodeID {
				errs = append(errs, fmt.Errorf("transfer of range %d from node %d, but the leader is %d", a.RangeID, a.From, r.LeaderNodeID))
			}
			if !byNode[a.To].usable() || !isVoterOn(r, a.To) {
				errs = append(errs, fmt.Errorf("transfer of range %d to node %d, not a usable voter", a.RangeID, a.To))
			}
		}
	}
	return errs
}

func isVoterOn(e *Entry, node uint64) bool {
	for _, r := range e.Desc.Replicas {
		if r.NodeId == node && r.Type == pb.ReplicaDescriptor_VOTER {
			return true
		}
	}
	return false
}

// apply makes an action's change the way the nodes do: a move adds the
// target as a voter and removes the source in two descriptor changes (a
// removal, To 0, in one), and a leader that is removed first hands
// leadership to the first other voter;
// a split keeps the left half's ID and gives the right half a new one, both
// at the next generation.
func (e *decideEnv) apply(a Action) {
	var r *Entry
	for _, x := range e.ranges {
		if x.Desc.RangeId == a.RangeID {
			r = x
		}
	}
	e.applied[a.Kind]++
	desc := r.Desc
	switch a.Kind {
	case Move:
		if a.From != 0 && r.LeaderNodeID == a.From {
			for _, rd := range desc.Replicas {
				if rd.NodeId != a.From && rd.Type == pb.ReplicaDescriptor_VOTER {
					r.LeaderNodeID = rd.NodeId
					break
				}
			}
		}
		// A learner already on To (a move that failed half-way) is promoted.
		desc.Replicas = slices.DeleteFunc(desc.Replicas, func(rd *pb.ReplicaDescriptor) bool { return rd.NodeId == a.From || rd.NodeId == a.To })
		if a.To == 0 {
			desc.Generation++
			break
		}
		desc.Replicas = append(desc.Replicas, &pb.ReplicaDescriptor{NodeId: a.To, ReplicaId: desc.NextReplicaId})
		desc.NextReplicaId++
		desc.Generation += 2
	case TransferLeader:
		r.LeaderNodeID = a.To
	case Split:
		var nextID uint64
		for _, x := range e.ranges {
			nextID = max(nextID, x.Desc.RangeId+1)
		}
		mid := midKey(desc.StartKey, desc.EndKey)
		desc.Generation++
		right := &Entry{Desc: proto.Clone(desc).(*pb.RangeDescriptor),
			LeaderNodeID: r.LeaderNodeID, SizeBytes: r.SizeBytes / 2, WritesPerSecond: r.WritesPerSecond / 2}
		right.Desc.RangeId, right.Desc.StartKey = nextID, mid
		desc.EndKey = mid
		r.SizeBytes -= right.SizeBytes
		r.WritesPerSecond -= right.WritesPerSecond
		e.put(right)
	}
}

// midKey returns a key strictly between start and end (end empty: no end):
// start+"m" if that is below end. Otherwise end is start+rest with rest at
// most "m", and the key is start followed by something below rest.
func midKey(start, end []byte) []byte {
	k := append(bytes.Clone(start), 'm')
	if len(end) == 0 || bytes.Compare(k, end) < 0 {
		return k
	}
	rest := end[len(start):]
	switch c := rest[0]; {
	case c > 'a':
		return append(bytes.Clone(start), 'a'+(c-'a')/2)
	case len(rest) > 1:
		return append(bytes.Clone(start), c)
	case c > 0:
		return append(bytes.Clone(start), c-1, 'm')
	}
	panic(fmt.Sprintf("no key between %q and %q", start, end))
}

func (e *decideEnv) cmdConverge(t *testing.T, d *datadriven.TestData) string {
	maxRounds := 100
	d.MaybeScanArgs(t, "max-rounds", &maxRounds)
	var b strings.Builder
	totals := map[ActionKind]int{}
	for round := 1; ; round++ {
		if round > maxRounds {
			t.Errorf("%s: no convergence after %d rounds", d.Pos, maxRounds)
			fmt.Fprintf(&b, "no convergence after %d rounds\n", maxRounds)
			break
		}
		acts := e.decide(t, d)
		if len(acts) == 0 {
			fmt.Fprintf(&b, "round %d: no actions\n", round)
			break
		}
		kinds := map[ActionKind]int{}
		for _, a := range acts {
			kinds[a.Kind]++
			totals[a.Kind]++
			e.apply(a)
		}
		fmt.Fprintf(&b, "round %d: %s\n", round, formatKinds(kinds))
	}
	fmt.Fprintf(&b, "converge: %s; so far: %s", formatKinds(totals), formatKinds(e.applied))
	if d.HasArg("quiet") {
		if strings.Contains(b.String(), "no convergence") {
			return "no convergence"
		}
		return "converged"
	}
	return b.String()
}

func formatKinds(m map[ActionKind]int) string {
	var parts []string
	for _, k := range []ActionKind{Move, TransferLeader, Split} {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", m[k], k))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func formatActions(acts []Action) string {
	if len(acts) == 0 {
		return "no actions"
	}
	var b strings.Builder
	for _, a := range acts {
		switch a.Kind {
		case Split:
			fmt.Fprintf(&b, "split r%d (%s)\n", a.RangeID, a.Reason)
		default:
			fmt.Fprintf(&b, "%s r%d from=%d to=%d (%s)\n", a.Kind, a.RangeID, a.From, a.To, a.Reason)
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// counts returns the replicas and leaders per node, and the usable nodes.
func (e *decideEnv) counts() (replicas, leaders map[uint64]int, usable []uint64) {
	replicas, leaders = map[uint64]int{}, map[uint64]int{}
	for _, r := range e.ranges {
		for _, rd := range r.Desc.Replicas {
			replicas[rd.NodeId]++
		}
		if r.LeaderNodeID != 0 {
			leaders[r.LeaderNodeID]++
		}
	}
	for _, id := range sortedKeys(e.nodes) {
		if e.nodes[id].usable() {
			usable = append(usable, id)
		}
	}
	return replicas, leaders, usable
}

// outsideBand returns the mean of counts over the usable nodes and the
// nodes outside ±max(1, 10%) of it, as Decide computes them.
func outsideBand(counts map[uint64]int, usable []uint64) (mean float64, outside []string) {
	total := 0
	for _, id := range usable {
		total += counts[id]
	}
	mean = float64(total) / float64(len(usable))
	for _, id := range usable {
		// As Decide compares: mean±band, not |c-mean|, which rounds
		// differently at the edge (40/3-12 > 0.1*40/3 in floating point).
		if c := float64(counts[id]); c > mean+band(mean) || c < mean-band(mean) {
			outside = append(outside, fmt.Sprintf("n%d", id))
		}
	}
	return mean, outside
}

// formatCounts prints replicas and leaders per node, and the mean and band
// over the usable nodes.
func (e *decideEnv) formatCounts() string {
	replicas, leaders, usable := e.counts()
	ids := sortedKeys(e.nodes)
	for id := range replicas {
		if e.nodes[id] == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var b strings.Builder
	for _, id := range ids {
		note := ""
		if n := e.nodes[id]; n == nil || !n.usable() {
			note = " (not usable)"
		}
		fmt.Fprintf(&b, "n%d: replicas=%d leaders=%d%s\n", id, replicas[id], leaders[id], note)
	}
	if len(usable) > 0 {
		for _, c := range []struct {
			name   string
			counts map[uint64]int
		}{{"replicas", replicas}, {"leaders", leaders}} {
			mean, outside := outsideBand(c.counts, usable)
			verdict := "all usable nodes within band"
			if len(outside) > 0 {
				verdict = "outside band: " + strings.Join(outside, ",")
			}
			fmt.Fprintf(&b, "%s: mean=%.2f band=±%.2f %s\n", c.name, mean, band(mean), verdict)
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func (e *decideEnv) checkBalanced() string {
	replicas, leaders, usable := e.counts()
	if len(usable) == 0 {
		return "no usable nodes"
	}
	_, outR := outsideBand(replicas, usable)
	_, outL := outsideBand(leaders, usable)
	if len(outR)+len(outL) == 0 {
		return "replicas and leaders within band"
	}
	return fmt.Sprintf("outside band: replicas %v, leaders %v", outR, outL)
}

func (e *decideEnv) checkReplication() string {
	usable := 0
	for _, n := range e.nodes {
		if n.usable() {
			usable++
		}
	}
	var problems []string
	for _, r := range e.ranges {
		want := e.cfg.ReplicationFactor
		if e.cfg.SystemRangeStart != nil && bytes.Equal(r.Desc.StartKey, e.cfg.SystemRangeStart) {
			want = max(want, min(e.cfg.SystemReplicationFactor, usable))
		}
		voters := 0
		for _, rd := range r.Desc.Replicas {
			n := e.nodes[rd.NodeId]
			switch {
			case rd.Type == pb.ReplicaDescriptor_LEARNER:
				problems = append(problems, fmt.Sprintf("r%d: learner on n%d", r.Desc.RangeId, rd.NodeId))
			case n == nil || n.Dead || n.State != pb.NodeRecord_ACTIVE:
				problems = append(problems, fmt.Sprintf("r%d: voter on n%d, dead or gone", r.Desc.RangeId, rd.NodeId))
			default:
				voters++
			}
		}
		if voters != want {
			problems = append(problems, fmt.Sprintf("r%d: %d good voters, wants %d", r.Desc.RangeId, voters, want))
		}
	}
	if len(problems) == 0 {
		return "every range fully replicated"
	}
	return strings.Join(problems, "\n")
}

func (e *decideEnv) formatRanges() string {
	if len(e.ranges) == 0 {
		return "no ranges"
	}
	var lines []string
	for _, r := range e.ranges {
		lines = append(lines, formatEntry(r))
	}
	return strings.Join(lines, "\n")
}

func formatEntry(r *Entry) string {
	var voters, learners []string
	for _, rd := range r.Desc.Replicas {
		if rd.Type == pb.ReplicaDescriptor_LEARNER {
			learners = append(learners, strconv.FormatUint(rd.NodeId, 10))
		} else {
			voters = append(voters, strconv.FormatUint(rd.NodeId, 10))
		}
	}
	s := fmt.Sprintf("r%d [%s,%s) gen=%d voters=%s", r.Desc.RangeId, r.Desc.StartKey, r.Desc.EndKey, r.Desc.Generation, strings.Join(voters, ","))
	if len(learners) > 0 {
		s += " learners=" + strings.Join(learners, ",")
	}
	return s + fmt.Sprintf(" leader=%d size=%d wps=%g", r.LeaderNodeID, r.SizeBytes, r.WritesPerSecond)
}

func sortedKeys[V any](m map[uint64]V) []uint64 {
	out := make([]uint64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func isLearnerOn(e *Entry, node uint64) bool {
	for _, r := range e.Desc.Replicas {
		if r.NodeId == node {
			return r.Type == pb.ReplicaDescriptor_LEARNER
		}
	}
	return false
}

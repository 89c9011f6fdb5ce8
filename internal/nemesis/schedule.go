package nemesis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/raftrix/raftrixdb/internal/faultcluster"
)

// Kind is a kind of fault.
type Kind string

// The faults the nemesis injects.
const (
	// PartitionHalves splits the nodes into two random groups.
	PartitionHalves Kind = "partition-halves"
	// PartitionIsolate cuts one node off from all others.
	PartitionIsolate Kind = "partition-isolate"
	// PartitionRing lets every node reach a majority, but no two nodes the
	// same majority (with three nodes: a bridge, A-B-C with A and C apart).
	PartitionRing Kind = "partition-ring"
	// PartitionOneWay makes one node unable to reach another, while the
	// other way still works.
	PartitionOneWay Kind = "partition-oneway"
	// PartitionMute makes one node unable to reach any other, while all of
	// them can still reach it.
	PartitionMute Kind = "partition-mute"
	// Delay adds up to 50ms before every write on one node's (or every
	// node's) peer connections.
	Delay Kind = "delay"
	// Stall delays every write on one node's peer connections by up to
	// 1.5s: the node looks paused to its peers, then its stale messages
	// (old terms, old commit indexes) arrive late and in a burst.
	Stall Kind = "stall"
	// Flaky makes every peer write cut its connection with a small
	// probability (a lossy link).
	Flaky Kind = "flaky"
	// CutConns cuts a random peer connection every 100ms.
	CutConns Kind = "cut-conns"
	// Kill stops a node cleanly (everything it wrote survives) and restarts
	// it later.
	Kill Kind = "kill"
	// Crash crashes a node, losing every write it had not synced, and
	// restarts it later.
	Crash Kind = "crash"
	// CrashMany crashes a majority of the nodes, or all of them, at once.
	CrashMany Kind = "crash-many"
	// TransferLeader asks a live node (Admin.TransferLeader) to hand a
	// random range's leadership to the replica on a random node.
	TransferLeader Kind = "transfer-leader"
	// Split asks a live node (Admin.SplitRange) to split a random user range
	// at a random key inside it; the right-hand side becomes a new range.
	Split Kind = "split"
	// Move asks a live node (Admin.MoveReplica) to move a random range's
	// replica to a node that holds none. Only drawn with more nodes than
	// replicas per range (4 or more nodes).
	Move Kind = "move"
)

// AllKinds lists every fault kind.
var AllKinds = []Kind{PartitionHalves, PartitionIsolate, PartitionRing, PartitionOneWay, PartitionMute, Delay, Stall, Flaky, CutConns, Kill, Crash, CrashMany, TransferLeader, Split, Move}

func isProcessKind(k Kind) bool { return k == Kill || k == Crash || k == CrashMany }

// isAdminKind reports whether k is an Admin RPC rather than an injected
// fault: it is attempted once, and may fail (during a partition, say)
// without that being a violation.
func isAdminKind(k Kind) bool { return k == TransferLeader || k == Split || k == Move }

// adminTimeout bounds one Admin RPC of the nemesis.
const adminTimeout = 5 * time.Second

// minNodesForMove is the fewest nodes that leave a node without a replica of
// a range (ranges have 3 replicas).
const minNodesForMove = 4

// fault is one fault with its parameters, all chosen from the seed.
type fault struct {
	kind   Kind
	groups [][]uint64 // partitions; for PartitionRing the links that stay
	from   uint64     // one-way: from cannot reach to; delay: the slow node (0 = all)
	to     uint64
	nodes  []uint64 // kill, crash: one node; crash-many: several
	delay  time.Duration
	prob   float64
	// pick seeds the choices an Admin RPC makes among the ranges and
	// nodes it finds when it runs (transfer-leader, split, move).
	pick uint64
}

func (f fault) String() string {
	switch f.kind {
	case PartitionHalves, PartitionIsolate:
		return fmt.Sprintf("%s %v", f.kind, f.groups)
	case PartitionRing:
		return fmt.Sprintf("%s links %v", f.kind, f.groups)
	case PartitionOneWay:
		return fmt.Sprintf("%s %d-/->%d", f.kind, f.from, f.to)
	case PartitionMute:
		return fmt.Sprintf("%s %d-/->all", f.kind, f.from)
	case Delay, Stall:
		return fmt.Sprintf("%s node %d up to %v", f.kind, f.from, f.delay)
	case Flaky:
		return fmt.Sprintf("%s p=%.3f", f.kind, f.prob)
	case Kill, Crash, CrashMany:
		return fmt.Sprintf("%s %v", f.kind, f.nodes)
	case TransferLeader, Split, Move:
		return fmt.Sprintf("%s pick=%016x", f.kind, f.pick)
	}
	return string(f.kind)
}

// step waits, injects its faults together, holds them, then undoes them.
type step struct {
	wait   time.Duration
	faults []fault
	hold   time.Duration
}

// schedule draws a fault schedule for nodes covering at least total time.
// It depends only on rng.
func schedule(rng *rand.Rand, nodes []uint64, kinds []Kind, total time.Duration) []step {
	if len(nodes) < minNodesForMove {
		// Every node holds a replica of every range: nowhere to move one.
		kinds = slices.DeleteFunc(slices.Clone(kinds), func(k Kind) bool { return k == Move })
		if len(kinds) == 0 {
			return nil
		}
	}
	var netKinds, procKinds, adminKinds []Kind
	for _, k := range kinds {
		if isAdminKind(k) {
			adminKinds = append(adminKinds, k)
		}
		if isProcessKind(k) {
			procKinds = append(procKinds, k)
		} else {
			netKinds = append(netKinds, k)
		}
	}
	var steps []step
	for elapsed := time.Duration(0); elapsed < total; {
		s := step{
			wait: time.Duration(300+rng.IntN(900)) * time.Millisecond,
			hold: time.Duration(400+rng.IntN(2100)) * time.Millisecond,
		}
		k := kinds[rng.IntN(len(kinds))]
		s.faults = append(s.faults, drawFault(rng, nodes, k))
		// Sometimes a process fault and a network fault at once, e.g. a
		// crash inside a partition.
		if rng.IntN(4) == 0 && len(netKinds) > 0 && len(procKinds) > 0 {
			other := netKinds
			if !isProcessKind(k) {
				other = procKinds
			}
			s.faults = append(s.faults, drawFault(rng, nodes, other[rng.IntN(len(other))]))
		}
		// Often an Admin RPC (leader transfer, split, move) under the
		// fault, so splits and transfers race partitions and crashes.
		if !isAdminKind(k) && len(adminKinds) > 0 && rng.IntN(3) == 0 {
			s.faults = append(s.faults, drawFault(rng, nodes, adminKinds[rng.IntN(len(adminKinds))]))
		}
		steps = append(steps, s)
		elapsed += s.wait + s.hold
	}
	return steps
}

func drawFault(rng *rand.Rand, nodes []uint64, k Kind) fault {
	f := fault{kind: k}
	perm := make([]uint64, len(nodes))
	for i, j := range rng.Perm(len(nodes)) {
		perm[i] = nodes[j]
	}
	switch k {
	case PartitionHalves:
		cut := len(perm) / 2
		f.groups = [][]uint64{sorted(perm[:cut]), sorted(perm[cut:])}
	case PartitionIsolate:
		f.groups = [][]uint64{{perm[0]}, sorted(perm[1:])}
	case PartitionRing:
		f.groups = ringLinks(perm)
	case PartitionOneWay:
		f.from, f.to = perm[0], perm[1]
	case PartitionMute:
		f.from = perm[0]
	case Delay:
		f.delay = time.Duration(5+rng.IntN(46)) * time.Millisecond
		if rng.IntN(2) == 0 {
			f.from = perm[0]
		}
	case Stall:
		f.from = perm[0]
		f.delay = time.Duration(200+rng.IntN(1300)) * time.Millisecond
	case Flaky:
		f.prob = []float64{0.01, 0.05, 0.2}[rng.IntN(3)]
	case Kill, Crash:
		f.nodes = perm[:1]
	case CrashMany:
		majority := len(perm)/2 + 1
		f.nodes = sorted(perm[:majority+rng.IntN(len(perm)-majority+1)])
	case TransferLeader, Split, Move:
		f.pick = rng.Uint64()
	}
	return f
}

func sorted(ids []uint64) []uint64 {
	out := append([]uint64(nil), ids...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// ringLinks returns the pairs of nodes that stay connected in a "majorities
// ring": nodes on a ring (in perm's order) reach their nearest neighbours so
// that each sees a majority, yet no two see the same majority. Three nodes
// cannot form such a ring, so they get a bridge: perm[1] reaches both others,
// which cannot reach each other.
func ringLinks(perm []uint64) [][]uint64 {
	n := len(perm)
	if n <= 3 {
		if n < 3 {
			return nil
		}
		return [][]uint64{{perm[0], perm[1]}, {perm[1], perm[2]}}
	}
	majority := n/2 + 1
	d := 1 // each node reaches 2d neighbours plus itself
	for 2*d+1 < majority {
		d++
	}
	var links [][]uint64
	for i := 0; i < n; i++ {
		for j := 1; j <= d; j++ {
			links = append(links, []uint64{perm[i], perm[(i+j)%n]})
		}
	}
	return links
}

// nemesis runs a schedule against a cluster and keeps a timeline of what it
// did.
type nemesis struct {
	c     *faultcluster.Cluster
	rng   *rand.Rand // for choices made while a fault is held (cut-conns)
	start time.Time

	mu     sync.Mutex
	counts map[Kind]int
	// succeeded counts the Admin RPCs (transfer-leader, split, move) that
	// succeeded; counts has those attempted.
	succeeded map[Kind]int
	timeline  []event
	errs      []string
}

// event is one entry of the nemesis timeline.
type event struct {
	start, end time.Duration
	what       string
}

func (nm *nemesis) note(start time.Duration, what string) {
	nm.mu.Lock()
	defer nm.mu.Unlock()
	nm.timeline = append(nm.timeline, event{start: start, end: time.Since(nm.start), what: what})
}

func (nm *nemesis) fail(format string, args ...any) {
	nm.mu.Lock()
	defer nm.mu.Unlock()
	nm.errs = append(nm.errs, fmt.Sprintf(format, args...))
}

// run executes steps until they are exhausted or ctx ends; it always leaves
// the cluster healed with every node running.
func (nm *nemesis) run(ctx context.Context, steps []step) {
	for _, s := range steps {
		if !sleep(ctx, s.wait) {
			return
		}
		nm.apply(ctx, s)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-ctx.Done():
		return false
	}
}

func (nm *nemesis) apply(ctx context.Context, s step) {
	nw := nm.c.Network()
	begin := time.Since(nm.start)
	var down []uint64
	var names []string
	cutConns := false
	var admins []fault
	var adminNames []int // index in names of each of admins
	for _, f := range s.faults {
		nm.mu.Lock()
		nm.counts[f.kind]++
		nm.mu.Unlock()
		names = append(names, f.String())
		switch f.kind {
		case PartitionHalves, PartitionIsolate:
			nw.Partition(f.groups...)
		case PartitionRing:
			nm.partitionRing(f.groups)
		case PartitionOneWay:
			nw.Block(f.from, f.to)
		case PartitionMute:
			for _, id := range nm.c.NodeIDs() {
				if id != f.from {
					nw.Block(f.from, id)
				}
			}
		case Delay, Stall:
			nw.SetDelay(f.from, f.delay)
		case Flaky:
			nw.SetFlaky(f.prob)
		case CutConns:
			cutConns = true
		case Kill:
			nm.c.Kill(f.nodes[0])
			down = append(down, f.nodes[0])
		case Crash, CrashMany:
			for _, id := range f.nodes {
				nm.c.Crash(id)
			}
			down = append(down, f.nodes...)
		case TransferLeader, Split, Move:
			admins = append(admins, f)
			adminNames = append(adminNames, len(names)-1)
		}
	}
	end := time.Now().Add(s.hold)
	// Admin RPCs run while the other faults of the step hold (no node stops
	// or restarts until they return), bounded by adminTimeout.
	var adminWG sync.WaitGroup
	outcomes := make([]string, len(admins))
	for i, f := range admins {
		adminWG.Add(1)
		go func() { defer adminWG.Done(); outcomes[i] = nm.admin(ctx, f) }()
	}
	for time.Now().Before(end) && ctx.Err() == nil {
		if cutConns {
			nw.CutRandom(nm.rng)
		}
		sleep(ctx, min(100*time.Millisecond, time.Until(end)))
	}
	adminWG.Wait()
	for i, o := range outcomes {
		if o != "" {
			names[adminNames[i]] = o
		}
	}
	nw.Heal()
	for _, id := range down {
		if err := nm.c.Restart(id); err != nil {
			nm.fail("restart node %d after %s: %v", id, strings.Join(names, " + "), err)
		}
	}
	nm.note(begin, strings.Join(names, " + "))
}

// partitionRing blocks every pair of nodes not linked.
func (nm *nemesis) partitionRing(links [][]uint64) {
	linked := map[[2]uint64]bool{}
	for _, l := range links {
		linked[[2]uint64{l[0], l[1]}] = true
		linked[[2]uint64{l[1], l[0]}] = true
	}
	ids := nm.c.NodeIDs()
	for _, a := range ids {
		for _, b := range ids {
			if a != b && !linked[[2]uint64{a, b}] {
				nm.c.Network().Block(a, b)
			}
		}
	}
}

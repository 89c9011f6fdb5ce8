package nemesis

import (
	"bytes"
	"cmp"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The defaults are the short run CI does; the long run is
//
//	go test ./internal/nemesis/ -run TestNemesis -v -timeout 4h \
//	    -nemesis.histories=100 -nemesis.ops=2000
var (
	flagHistories = flag.Int("nemesis.histories", 3, "number of runs (histories), seeds seed..seed+histories-1")
	flagOps       = flag.Int("nemesis.ops", 1000, "client operations per run")
	flagSeed      = flag.Int64("nemesis.seed", 1, "first seed; 0 picks one from the clock")
	flagNodes     = flag.Int("nemesis.nodes", 0, "nodes per cluster (default: 3 for odd seeds, 4 for even seeds, so that half the runs move replicas)")
	flagRanges    = flag.Int("nemesis.ranges", 8, "ranges per cluster")
	flagRate      = flag.Float64("nemesis.rate", 0, "client operations per second over all clients (default 80)")
	flagTruncate  = flag.Uint64("nemesis.truncate", 0, "log truncation threshold (default: drawn from the seed among 16, 64, 1000)")
	flagKeys      = flag.Int("nemesis.keys", 0, "register keys (default 12)")
	flagKinds     = flag.String("nemesis.kinds", "", "comma-separated fault kinds to inject (default all: "+kindNames()+")")
	flagOut       = flag.String("nemesis.out", os.Getenv("NEMESIS_OUT"), "directory for the evidence of failing runs (default: a new temp dir; env NEMESIS_OUT)")
)

func TestNemesis(t *testing.T) {
	first := *flagSeed
	if first == 0 {
		first = time.Now().UnixNano() % 1_000_000
	}
	var kinds []Kind
	if *flagKinds != "" {
		for _, k := range strings.Split(*flagKinds, ",") {
			if !slices.Contains(AllKinds, Kind(k)) {
				t.Fatalf("unknown fault kind %q; kinds are %s", k, kindNames())
			}
			kinds = append(kinds, Kind(k))
		}
	}
	var (
		mu      sync.Mutex
		results []*Result
	)
	// The histories run as parallel subtests of one group, so the summary
	// below is printed after all of them. go test's -parallel bounds how
	// many run at once (default GOMAXPROCS); a cluster is mostly idle
	// between operations, so several share a core well.
	t.Run("histories", func(t *testing.T) {
		for i := 0; i < *flagHistories; i++ {
			seed := first + int64(i)
			t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
				t.Parallel()
				runSeed(t, seed, kinds, func(res *Result) {
					mu.Lock()
					defer mu.Unlock()
					results = append(results, res)
				})
			})
		}
	})
	slices.SortFunc(results, func(a, b *Result) int { return cmp.Compare(a.Seed, b.Seed) })
	t.Log(Summary(results))
}

// runSeed runs and checks the history of one seed.
func runSeed(t *testing.T, seed int64, kinds []Kind, done func(*Result)) {
	// Also on stderr, so a seed that brings the process down is known.
	fmt.Fprintf(os.Stderr, "nemesis: seed %d starting\n", seed)
	res, err := Run(context.Background(), Config{
		Seed:         seed,
		Nodes:        nodesFor(seed),
		Ranges:       *flagRanges,
		Ops:          *flagOps,
		Rate:         *flagRate,
		RegisterKeys: *flagKeys,
		Truncate:     *flagTruncate,
		Kinds:        kinds,
		OutDir:       *flagOut,
		Logf:         t.Logf,
	})
	if err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	done(res)
	t.Logf("seed %d: %d ops attempted, %d checked (%d register, %d set, %d bank transfers, %d bank reads; %d unknown, %d refused); faults %v (admin RPCs succeeded %v); truncate threshold %d, %d snapshots; %d samples (%d quiesced replicas), %d hash and %d term comparisons; recovery %v; took %v",
		seed, res.Attempted, res.Ops, res.RegisterOps, res.SetOps, res.BankTransfers, res.BankReads, res.Unknown, res.Failed, res.Faults, res.FaultsOK, res.LogTruncateThreshold, res.Snapshots,
		res.Samples, res.Quiesced, res.HashChecks, res.TermChecks, res.Recovery.Round(time.Millisecond), res.Elapsed.Round(time.Millisecond))
	for _, n := range res.Notes {
		t.Logf("seed %d: note: %s", seed, n)
	}
	for _, v := range res.Violations {
		t.Errorf("%s", v)
	}
	if len(res.Violations) > 0 {
		t.Errorf("seed %d: evidence in %s; rerun with -run 'TestNemesis/histories/seed=%d$' -nemesis.seed=%d -nemesis.histories=1 -nemesis.ops=%d",
			seed, res.OutDir, seed, seed, *flagOps)
	}
}

func kindNames() string {
	var names []string
	for _, k := range AllKinds {
		names = append(names, string(k))
	}
	return strings.Join(names, ",")
}

// TestRegisterModelCatchesStaleRead makes sure the checker is not vacuous: a
// read that misses a write acknowledged before it started is illegal, while
// an unknown write may be seen or not.
func TestRegisterModelCatchesStaleRead(t *testing.T) {
	op := func(client int, call, ret int64, in RegInput, out RegOutput) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Call: call, Return: ret, Input: in, Output: out}
	}
	put := func(v string) RegInput { return RegInput{Op: regPut, Key: "k", Value: v} }
	get := RegInput{Op: regGet, Key: "k"}
	cas := func(exp, v string) RegInput { return RegInput{Op: regCAS, Key: "k", Expected: exp, Value: v} }
	const inf = 1000

	cases := []struct {
		name string
		ops  []porcupine.Operation
		want bool
	}{
		{"stale read", []porcupine.Operation{
			op(0, 0, 10, put("a"), RegOutput{OK: true}),
			op(1, 20, 30, put("b"), RegOutput{OK: true}),
			op(2, 40, 50, get, RegOutput{Found: true, Value: "a"}),
		}, false},
		{"unknown write seen", []porcupine.Operation{
			op(0, 0, inf, put("a"), RegOutput{Unknown: true}),
			op(1, 20, 30, get, RegOutput{Found: true, Value: "a"}),
		}, true},
		{"unknown write never applied", []porcupine.Operation{
			op(0, 0, inf, put("a"), RegOutput{Unknown: true}),
			op(1, 20, 30, get, RegOutput{Found: false}),
		}, true},
		{"unknown write seen, then unseen", []porcupine.Operation{
			op(0, 0, inf, put("a"), RegOutput{Unknown: true}),
			op(1, 20, 30, get, RegOutput{Found: true, Value: "a"}),
			op(1, 40, 50, get, RegOutput{Found: false}),
		}, false},
		{"cas failed although it held", []porcupine.Operation{
			op(0, 0, 10, put("a"), RegOutput{OK: true}),
			op(1, 20, 30, cas("a", "b"), RegOutput{OK: false}),
		}, false},
		{"unknown cas applied", []porcupine.Operation{
			op(0, 0, 10, put("a"), RegOutput{OK: true}),
			op(1, 20, inf, cas("a", "b"), RegOutput{Unknown: true}),
			op(2, 40, 50, get, RegOutput{Found: true, Value: "b"}),
		}, true},
		{"delete reports a key that was absent", []porcupine.Operation{
			op(0, 0, 10, RegInput{Op: regDelete, Key: "k"}, RegOutput{OK: true}),
		}, false},
		{"read after delete", []porcupine.Operation{
			op(0, 0, 10, put("a"), RegOutput{OK: true}),
			op(0, 20, 30, RegInput{Op: regDelete, Key: "k"}, RegOutput{OK: true}),
			op(1, 40, 50, get, RegOutput{Found: true, Value: "a"}),
		}, false},
		{"unknown cas whose compare failed cannot apply", []porcupine.Operation{
			op(0, 0, 10, put("a"), RegOutput{OK: true}),
			op(1, 20, inf, cas("x", "b"), RegOutput{Unknown: true}),
			op(2, 40, 50, get, RegOutput{Found: true, Value: "b"}),
		}, false},
	}
	for _, tc := range cases {
		if got := porcupine.CheckOperations(registerModel, tc.ops); got != tc.want {
			t.Errorf("%s: linearizable = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCheckRevisions(t *testing.T) {
	op := func(call, ret int64, in RegInput, out RegOutput) porcupine.Operation {
		return porcupine.Operation{Call: call, Return: ret, Input: in, Output: out}
	}
	put := func(v string) RegInput { return RegInput{Op: regPut, Key: "k", Value: v} }
	get := RegInput{Op: regGet, Key: "k"}
	good := []porcupine.Operation{
		op(0, 10, put("a"), RegOutput{OK: true, Rev: 5}),
		op(5, 15, get, RegOutput{Found: true, Value: "a", Rev: 5}),
		op(20, 30, put("b"), RegOutput{OK: true, Rev: 9}),
		op(21, 40, get, RegOutput{Found: true, Value: "a", Rev: 5}), // concurrent with put(b)
		op(50, 60, get, RegOutput{Found: true, Value: "b", Rev: 9}),
	}
	if v := checkRevisions(good); len(v) > 0 {
		t.Errorf("good history: %v", v)
	}
	bad := map[string][]porcupine.Operation{
		"revision went back": {
			op(0, 10, put("a"), RegOutput{OK: true, Rev: 5}),
			op(20, 30, put("b"), RegOutput{OK: true, Rev: 4}),
		},
		"read a different revision than written": {
			op(0, 10, put("a"), RegOutput{OK: true, Rev: 5}),
			op(20, 30, get, RegOutput{Found: true, Value: "a", Rev: 6}),
		},
		"two writes, one revision": {
			op(0, 10, put("a"), RegOutput{OK: true, Rev: 5}),
			op(20, 30, put("b"), RegOutput{OK: true, Rev: 5}),
		},
	}
	for name, h := range bad {
		if v := checkRevisions(h); len(v) == 0 {
			t.Errorf("%s: not detected", name)
		}
	}
}

// TestScheduleDependsOnlyOnSeed: the same seed draws the same faults.
func TestScheduleDependsOnlyOnSeed(t *testing.T) {
	draw := func(seed uint64) []step {
		return schedule(rand.New(rand.NewPCG(seed, 7)), []uint64{1, 2, 3}, AllKinds, time.Minute)
	}
	a, b := draw(42), draw(42)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different schedules")
	}
	if reflect.DeepEqual(a, draw(43)) {
		t.Fatal("different seeds, same schedule")
	}
	kinds := map[Kind]bool{}
	for _, s := range a {
		for _, f := range s.faults {
			kinds[f.kind] = true
		}
	}
	if len(kinds) < len(AllKinds)-2 {
		t.Errorf("a minute of schedule uses only %v", kinds)
	}
}

func TestRingLinks(t *testing.T) {
	for n := 3; n <= 7; n++ {
		perm := make([]uint64, n)
		for i := range perm {
			perm[i] = uint64(i + 1)
		}
		reach := map[uint64]map[uint64]bool{}
		for _, id := range perm {
			reach[id] = map[uint64]bool{id: true}
		}
		for _, l := range ringLinks(perm) {
			reach[l[0]][l[1]] = true
			reach[l[1]][l[0]] = true
		}
		views := map[string]bool{}
		for _, id := range perm {
			if len(reach[id]) < n/2+1 {
				t.Errorf("n=%d: node %d sees %d nodes, less than a majority", n, id, len(reach[id]))
			}
			if len(reach[id]) == n && n > 3 {
				t.Errorf("n=%d: node %d sees everyone", n, id)
			}
			views[fmt.Sprint(reach[id])] = true
		}
		if len(views) < 2 {
			t.Errorf("n=%d: every node sees the same nodes", n)
		}
	}
}

func TestSplitKey(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := [][2]string{
		{"", "\x20\x00"}, {"\x20\x00", "\x40\x00"}, {"\xe0\x00", ""}, {"\x3f\xff", "\x40\x00"},
		{"\x20\x00/reg/1", "\x20\x00/reg/2"}, {"\xff\xfe\x10", ""}, {"a", "a\x00"},
	}
	for _, c := range cases {
		start, end := []byte(c[0]), []byte(c[1])
		for i := 0; i < 200; i++ {
			k := splitKey(rng, start, end)
			if k == nil {
				continue
			}
			if bytes.Compare(k, start) <= 0 || (len(end) > 0 && bytes.Compare(k, end) >= 0) || isSystemKey(k) {
				t.Fatalf("splitKey(%q, %q) = %q", start, end, k)
			}
		}
	}
}

// nodesFor is the cluster size of a seed's run: -nemesis.nodes, or else 3
// nodes for odd seeds and 4 for even ones. Replica moves need a fourth node
// (a node must be left without a replica), so half the runs exercise moves
// and cluster-wide descriptor coverage, the other half a full 3-node
// cluster where every node holds every range.
func nodesFor(seed int64) int {
	if *flagNodes > 0 {
		return *flagNodes
	}
	if seed%2 == 0 {
		return 4
	}
	return 3
}

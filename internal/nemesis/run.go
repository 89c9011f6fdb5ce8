package nemesis

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/raftrix/raftrixdb/internal/faultcluster"
	"github.com/raftrix/raftrixdb/node"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Config describes one run: a fresh cluster, a workload under a seeded fault
// schedule, a final heal, and the checks.
type Config struct {
	Seed   int64
	Nodes  int // default 3
	Ranges int // default 8
	// Ops is the number of client operations (register and set together);
	// default 1000. Rate paces them (operations per second over all
	// clients, default 80), so a run lasts about Ops/Rate seconds.
	Ops  int
	Rate float64
	// RegisterKeys and RegisterClients shape the register workload (default
	// 12 keys, 10 clients); SetClients the set workload (default 3);
	// BankClients the bank workload's cross-range transactions (default 2).
	RegisterKeys    int
	RegisterClients int
	SetClients      int
	BankClients     int
	// Truncate, if set, is the log truncation threshold; otherwise it is
	// drawn from the seed among 16, 64 and 1000.
	Truncate uint64
	// Kinds are the faults to inject (default AllKinds).
	Kinds []Kind
	// OpTimeout bounds one client operation (default 1s).
	OpTimeout time.Duration
	// RecoveryBound is how soon after the final heal every range must
	// accept a write again (default 10s).
	RecoveryBound time.Duration
	// OutDir receives the files of a run that finds a violation; empty means
	// a new directory under os.TempDir.
	OutDir string
	// Logf, if set, receives progress lines.
	Logf func(format string, args ...any)
}

func (c *Config) setDefaults() {
	if c.Nodes == 0 {
		c.Nodes = 3
	}
	if c.Ranges == 0 {
		c.Ranges = 8
	}
	if c.Ops == 0 {
		c.Ops = 1000
	}
	if c.Rate == 0 {
		c.Rate = 80
	}
	if c.RegisterKeys == 0 {
		c.RegisterKeys = 12
	}
	if c.RegisterClients == 0 {
		c.RegisterClients = 10
	}
	if c.SetClients == 0 {
		c.SetClients = 3
	}
	if c.BankClients == 0 {
		c.BankClients = 2
	}
	if len(c.Kinds) == 0 {
		c.Kinds = AllKinds
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = time.Second
	}
	if c.RecoveryBound == 0 {
		c.RecoveryBound = 10 * time.Second
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// Result is what one run found.
type Result struct {
	Seed int64
	// LogTruncateThreshold was drawn from the seed.
	LogTruncateThreshold uint64
	// Attempted counts the client operations started. Ops counts those
	// checked (register operations that observed something, every set
	// insert, and the bank's transfers and reads that succeeded); Unknown
	// the writes whose outcome the client could not know; Failed the
	// operations refused before doing anything.
	Attempted, Ops, RegisterOps, SetOps, Unknown, Failed int
	// BankTransfers and BankReads count the bank's committed transfers and
	// its successful reads of every balance.
	BankTransfers, BankReads int
	Faults                   map[Kind]int
	// FaultsOK counts, of the Admin RPC faults in Faults (transfer-leader,
	// split, move), those that succeeded; the others failed, as they may
	// during partitions and crashes.
	FaultsOK map[Kind]int
	// Violations are broken guarantees; each names the seed.
	Violations []string
	// Notes are oddities that are not violations (unexpected error codes,
	// a linearizability check that timed out, a slow workload).
	Notes []string
	// Recovery is the longest time a range took to accept a write after the
	// final heal.
	Recovery time.Duration
	// Samples counts invariant samples; HashChecks and TermChecks count
	// state hashes and committed terms compared across nodes.
	Samples, HashChecks, TermChecks int
	// Snapshots counts the snapshots nodes received; Quiesced the replicas
	// the samples found quiesced.
	Snapshots, Quiesced int
	Elapsed             time.Duration
	// OutDir holds the history, visualization, timeline and node logs when
	// there are violations.
	OutDir string
}

// Run performs one run. An error means the harness itself failed (say, the
// cluster did not start); broken guarantees are reported in Result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.setDefaults()
	began := time.Now()
	rng := rand.New(rand.NewPCG(splitmix(uint64(cfg.Seed)), splitmix(uint64(cfg.Seed)+1)))
	res := &Result{Seed: cfg.Seed, Faults: map[Kind]int{}, FaultsOK: map[Kind]int{}}
	res.LogTruncateThreshold = []uint64{16, 64, 1000}[rng.IntN(3)]
	if cfg.Truncate != 0 {
		res.LogTruncateThreshold = cfg.Truncate
	}

	logs := &logBuffer{}
	c, err := faultcluster.Start(faultcluster.Options{
		Nodes:                cfg.Nodes,
		InitialRanges:        cfg.Ranges,
		LogTruncateThreshold: res.LogTruncateThreshold,
		Logger:               slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: logLevel()})),
	})
	if err != nil {
		return nil, fmt.Errorf("seed %d: %w", cfg.Seed, err)
	}
	defer c.Close()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	_, err = c.WaitLeaders(wctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("seed %d: %w", cfg.Seed, err)
	}

	nodes := c.NodeIDs()
	bank := newBankState(cfg.Ranges)
	octx, cancel := context.WithTimeout(ctx, 20*time.Second)
	err = bank.open(octx, c, nodes)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("seed %d: %w", cfg.Seed, err)
	}

	start := time.Now()
	clients := cfg.RegisterClients + cfg.SetClients + cfg.BankClients
	planned := time.Duration(float64(cfg.Ops) / cfg.Rate * float64(time.Second))
	w := &workload{c: c, cfg: cfg, nodes: nodes, start: start,
		meanThink: time.Duration(float64(clients) / cfg.Rate * float64(time.Second)),
		lulls:     drawLulls(rng, 3*planned)}
	w.budget.Store(int64(cfg.Ops))
	for i := 0; i < cfg.RegisterKeys; i++ {
		w.regKeys = append(w.regKeys, keyInRange(i%cfg.Ranges, cfg.Ranges, fmt.Sprintf("/reg/%d", i)))
	}
	steps := schedule(rng, nodes, cfg.Kinds, 2*planned+10*time.Second)
	nm := &nemesis{c: c, rng: rand.New(rand.NewPCG(rng.Uint64(), 1)), start: start, counts: map[Kind]int{}, succeeded: map[Kind]int{}}
	iv := newInvariants(c, start)
	h := newHistory(start)
	sets := newSetState()

	// The workload phase: clients and nemesis together, bounded in time in
	// case the cluster stops serving.
	runCtx, stopRun := context.WithTimeout(ctx, max(2*planned, planned+18*time.Second))
	defer stopRun()
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { defer bg.Done(); iv.run(sampleCtx, 200*time.Millisecond) }()
	nemCtx, stopNemesis := context.WithCancel(runCtx)
	nemDone := make(chan struct{})
	go func() { defer close(nemDone); nm.run(nemCtx, steps) }()
	var clientsWG sync.WaitGroup
	for i := 0; i < cfg.RegisterClients; i++ {
		rc := &registerClient{id: i, clients: cfg.RegisterClients, rng: rand.New(rand.NewPCG(rng.Uint64(), uint64(i))), w: w, h: h, last: map[string]string{}}
		clientsWG.Add(1)
		go func() { defer clientsWG.Done(); rc.run(runCtx) }()
	}
	for i := 0; i < cfg.SetClients; i++ {
		sc := &setClient{id: i, clients: cfg.SetClients, rng: rand.New(rand.NewPCG(rng.Uint64(), uint64(100+i))), w: w, s: sets}
		clientsWG.Add(1)
		go func() { defer clientsWG.Done(); sc.run(runCtx) }()
	}
	for i := 0; i < cfg.BankClients; i++ {
		bc := &bankClient{rng: rand.New(rand.NewPCG(rng.Uint64(), uint64(200+i))), w: w, b: bank}
		clientsWG.Add(1)
		go func() { defer clientsWG.Done(); bc.run(runCtx) }()
	}
	clientsWG.Wait()
	if left := w.budget.Load(); left > 0 && runCtx.Err() != nil {
		res.Notes = append(res.Notes, fmt.Sprintf("workload phase hit its time bound with %d operations not started", left))
	}
	stopNemesis()
	<-nemDone
	cfg.Logf("seed %d: workload done after %v; healing", cfg.Seed, time.Since(start).Round(time.Millisecond))

	// Final heal: no network faults, every node running.
	c.Network().Heal()
	for _, id := range nodes {
		if err := c.Restart(id); err != nil {
			nm.fail("final restart of node %d: %v", id, err)
		}
	}
	healed := time.Now()
	res.Recovery, err = probeEveryRange(ctx, c, cfg, nodes)
	var violations []string
	if err != nil {
		violations = append(violations, "stuck after the final heal: "+err.Error())
	}
	cfg.Logf("seed %d: every range writable %v after heal", cfg.Seed, res.Recovery.Round(time.Millisecond))

	sctx, cancel := context.WithTimeout(ctx, cfg.RecoveryBound)
	found, err := scanSetKeys(sctx, c, nodes)
	cancel()
	if err != nil {
		violations = append(violations, fmt.Sprintf("set: %v", err))
	} else {
		violations = append(violations, sets.check(found)...)
	}
	bctx, cancel := context.WithTimeout(ctx, cfg.RecoveryBound)
	violations = append(violations, bank.finalCheck(bctx, c, nodes)...)
	cancel()

	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	lagging := iv.converge(cctx)
	cancel()
	stopSampling()
	bg.Wait()
	if len(lagging) > 0 {
		violations = append(violations, fmt.Sprintf("replicas did not converge within 15s of the heal (+%v): %s",
			time.Since(healed).Round(time.Millisecond), strings.Join(lagging, "; ")))
	}
	ivViolations, samples, hashChecks, termChecks, quiesced := iv.result()
	violations = append(violations, ivViolations...)
	res.Samples, res.HashChecks, res.TermChecks, res.Quiesced = samples, hashChecks, termChecks, quiesced

	nm.mu.Lock()
	violations = append(violations, nm.errs...)
	for k, n := range nm.counts {
		res.Faults[k] = n
	}
	for k, n := range nm.succeeded {
		res.FaultsOK[k] = n
	}
	nm.mu.Unlock()

	ops := h.operations()
	checkRes, info, badKeys := checkRegister(ops)
	switch checkRes {
	case porcupine.Illegal:
		violations = append(violations, fmt.Sprintf("register history is not linearizable (keys %s)", strings.Join(badKeys, ", ")))
	case porcupine.Unknown:
		res.Notes = append(res.Notes, "linearizability check timed out (inconclusive)")
	}
	violations = append(violations, checkRevisions(ops)...)

	sets.mu.Lock()
	res.SetOps = sets.attempts
	res.Unknown = len(sets.unknown)
	sets.mu.Unlock()
	res.RegisterOps = len(ops)
	bank.mu.Lock()
	res.BankTransfers, res.BankReads = bank.transfers, bank.reads
	res.Unknown += bank.unknown
	bank.mu.Unlock()
	res.Ops = res.RegisterOps + res.SetOps + res.BankTransfers + res.BankReads
	res.Attempted = cfg.Ops - int(max(w.budget.Load(), 0))
	res.Failed = int(w.outcomes[outFailed].Load())
	h.mu.Lock()
	res.Unknown += len(h.unknown)
	for _, s := range h.internal {
		res.Notes = append(res.Notes, "unexpected error: "+s)
	}
	h.mu.Unlock()
	for _, v := range violations {
		res.Violations = append(res.Violations, fmt.Sprintf("seed %d: %s", cfg.Seed, v))
	}
	res.Snapshots = int(c.Counter("raftrix_snapshots_received_total"))
	res.Elapsed = time.Since(began)
	if len(res.Violations) > 0 {
		dir, err := writeEvidence(cfg, res, ops, checkRes, info, nm, logs)
		if err != nil {
			res.Notes = append(res.Notes, "writing evidence: "+err.Error())
		}
		res.OutDir = dir
	}
	return res, nil
}

// splitmix scrambles a seed so that neighbouring seeds draw unrelated
// streams.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// probeEveryRange writes a key into every range, each retried until it
// succeeds or the recovery bound passes, and returns the longest time one
// took.
func probeEveryRange(ctx context.Context, c *faultcluster.Cluster, cfg Config, nodes []uint64) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, cfg.RecoveryBound)
	defer cancel()
	var mu sync.Mutex
	var slowest time.Duration
	var stuck []string
	// A key in each initial range, and the start key of every range that
	// splits have created since.
	var probes [][]byte
	for i := 0; i < cfg.Ranges; i++ {
		probes = append(probes, []byte(keyInRange(i, cfg.Ranges, fmt.Sprintf("/probe/%d", cfg.Seed))))
	}
	starts := map[string]bool{}
	for _, id := range nodes {
		c.WithNode(id, func(n *node.Node) {
			for _, d := range n.RangeDescriptors() {
				if len(d.StartKey) > 0 && !isSystemKey(d.StartKey) {
					starts[string(d.StartKey)] = true
				}
			}
		})
	}
	for i := 0; i < cfg.Ranges; i++ {
		delete(starts, keyInRange(i, cfg.Ranges, ""))
	}
	for _, k := range slices.Sorted(maps.Keys(starts)) {
		probes = append(probes, []byte(k))
	}
	var wg sync.WaitGroup
	for i, key := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last error
			for attempt := 0; ctx.Err() == nil; attempt++ {
				pctx, pcancel := context.WithTimeout(ctx, cfg.OpTimeout)
				_, err := c.KV(nodes[attempt%len(nodes)]).Put(pctx, &pb.PutRequest{Key: key, Value: []byte("probe")})
				pcancel()
				if err == nil {
					mu.Lock()
					slowest = max(slowest, time.Since(start))
					mu.Unlock()
					return
				}
				last = err
				sleep(ctx, 20*time.Millisecond)
			}
			mu.Lock()
			stuck = append(stuck, fmt.Sprintf("probe %d (key %q, last error: %v)", i+1, key, last))
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(stuck) > 0 {
		sort.Strings(stuck)
		return slowest, fmt.Errorf("no write succeeded within %v: %s", cfg.RecoveryBound, strings.Join(stuck, "; "))
	}
	return slowest, nil
}

// checkTimeout bounds the linearizability check of one history.
const checkTimeout = 60 * time.Second

// checkRegister checks the register history and, if it is not linearizable,
// names the keys whose sub-histories are not.
func checkRegister(ops []porcupine.Operation) (porcupine.CheckResult, porcupine.LinearizationInfo, []string) {
	res, info := porcupine.CheckOperationsVerbose(registerModel, ops, checkTimeout)
	if res != porcupine.Illegal {
		return res, info, nil
	}
	var bad []string
	for _, part := range registerModel.Partition(ops) {
		if porcupine.CheckOperationsTimeout(registerModel, part, checkTimeout) == porcupine.Illegal {
			bad = append(bad, fmt.Sprintf("%q", part[0].Input.(RegInput).Key))
		}
	}
	return res, info, bad
}

// writeEvidence saves what a failing run needs for diagnosis.
func writeEvidence(cfg Config, res *Result, ops []porcupine.Operation, checkRes porcupine.CheckResult,
	info porcupine.LinearizationInfo, nm *nemesis, logs *logBuffer) (string, error) {
	dir := cfg.OutDir
	if dir == "" {
		d, err := os.MkdirTemp("", "raftrix-nemesis-")
		if err != nil {
			return "", err
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	prefix := filepath.Join(dir, fmt.Sprintf("seed-%d-", cfg.Seed))
	var errs []string
	save := func(name string, data []byte) {
		if err := os.WriteFile(prefix+name, data, 0o644); err != nil {
			errs = append(errs, err.Error())
		}
	}
	save("violations.txt", []byte(strings.Join(append(append([]string(nil), res.Violations...), res.Notes...), "\n")+"\n"))

	type jsonOp struct {
		Client         int
		Call, Return   int64
		Input          RegInput
		Output         RegOutput
		Desc, Metadata string
	}
	var jops []jsonOp
	for _, op := range ops {
		jops = append(jops, jsonOp{Client: op.ClientId, Call: op.Call, Return: op.Return, Input: op.Input.(RegInput), Output: op.Output.(RegOutput),
			Desc: registerModel.DescribeOperation(op.Input, op.Output), Metadata: fmt.Sprint(op.Metadata)})
	}
	if data, err := json.MarshalIndent(jops, "", " "); err == nil {
		save("history.json", data)
	}

	nm.mu.Lock()
	var timeline strings.Builder
	var notes []porcupine.Annotation
	for _, e := range nm.timeline {
		fmt.Fprintf(&timeline, "%10v .. %10v  %s\n", e.start.Round(time.Millisecond), e.end.Round(time.Millisecond), e.what)
		notes = append(notes, porcupine.Annotation{Tag: "nemesis", Start: int64(e.start), End: int64(e.end), Description: e.what})
	}
	nm.mu.Unlock()
	save("timeline.txt", []byte(timeline.String()))
	save("nodes.log", logs.bytes())
	if checkRes == porcupine.Illegal {
		info.AddAnnotations(notes)
		if err := porcupine.VisualizePath(registerModel, info, prefix+"linearizability.html"); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return dir, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return dir, nil
}

// logBuffer keeps the nodes' log lines of one run, up to a bound.
type logBuffer struct {
	mu      sync.Mutex
	buf     []byte
	dropped int
}

const maxLogBytes = 8 << 20

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf)+len(p) > maxLogBytes {
		l.dropped++
		return len(p), nil
	}
	l.buf = append(l.buf, p...)
	return len(p), nil
}

func (l *logBuffer) bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]byte(nil), l.buf...)
	if l.dropped > 0 {
		out = append(out, fmt.Sprintf("... %d more lines dropped\n", l.dropped)...)
	}
	return out
}

// Summary is a one-line account of many runs.
func Summary(results []*Result) string {
	var ops, unknown, violations, snapshots int
	faults, ok := map[Kind]int{}, map[Kind]int{}
	for _, r := range results {
		for k, n := range r.FaultsOK {
			ok[k] += n
		}
		ops += r.Ops
		unknown += r.Unknown
		snapshots += r.Snapshots
		violations += len(r.Violations)
		for k, n := range r.Faults {
			faults[k] += n
		}
	}
	var fs []string
	total := 0
	for _, k := range AllKinds {
		if faults[k] > 0 && isAdminKind(k) {
			fs = append(fs, fmt.Sprintf("%s=%d(ok %d)", k, faults[k], ok[k]))
			total += faults[k]
		} else if faults[k] > 0 {
			fs = append(fs, fmt.Sprintf("%s=%d", k, faults[k]))
			total += faults[k]
		}
	}
	return fmt.Sprintf("nemesis: histories=%d operations=%d unknown=%d snapshots=%d faults=%d (%s) violations=%d",
		len(results), ops, unknown, snapshots, total, strings.Join(fs, " "), violations)
}

// logLevel is the level of the node logs kept as evidence: warnings, or
// NEMESIS_LOG_LEVEL (debug, info, warn, error) when debugging a seed.
func logLevel() slog.Level {
	var l slog.Level = slog.LevelWarn
	if v := os.Getenv("NEMESIS_LOG_LEVEL"); v != "" {
		_ = l.UnmarshalText([]byte(v))
	}
	return l
}

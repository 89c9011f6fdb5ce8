package killtest

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/status"

	"github.com/raftrix/raftrixdb/client"
)

// TestKillNine is the long run: 50 kills (RAFTRIX_KILL_COUNT) in a few
// minutes. scripts/kill_test.sh runs it.
func TestKillNine(t *testing.T) {
	if os.Getenv("RAFTRIX_KILL_TEST") != "1" {
		t.Skip("the kill -9 test of real processes (50 kills, a few minutes) runs only with RAFTRIX_KILL_TEST=1; use scripts/kill_test.sh or make test-kill")
	}
	run(t, options{
		kills:   envInt(t, "RAFTRIX_KILL_COUNT", 50),
		writers: envInt(t, "RAFTRIX_KILL_WRITERS", 8),
		seed:    envSeed(t),
		budget:  6 * time.Minute,
	})
}

// TestKillNineQuick is the same run with 3 kills, about 20 seconds.
func TestKillNineQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and kill -9s raftrix processes (~20s)")
	}
	run(t, options{
		kills:   3,
		writers: envInt(t, "RAFTRIX_KILL_WRITERS", 8),
		seed:    envSeed(t),
		budget:  2 * time.Minute,
	})
}

type options struct {
	kills   int
	writers int
	seed    uint64
	// budget bounds the whole run; past it the run fails.
	budget time.Duration
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return v
}

func envSeed(t *testing.T) uint64 {
	t.Helper()
	s := os.Getenv("RAFTRIX_KILL_SEED")
	if s == "" {
		return uint64(time.Now().UnixNano())
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("RAFTRIX_KILL_SEED=%q: %v", s, err)
	}
	return v
}

// killEvent is one kill and restart, for the report.
type killEvent struct {
	n               int
	node            int
	pid             int
	killed, restart time.Duration // since the run began
	serving         time.Duration // from restart to answering NodeStatus
	ackedAtKill     int           // acknowledged writes when the node was killed
}

func run(t *testing.T, o options) {
	begin := time.Now()
	since := func() time.Duration { return time.Since(begin) }
	t.Logf("seed %d (rerun with RAFTRIX_KILL_SEED=%d), %d kills, %d writers; +0s is %s",
		o.seed, o.seed, o.kills, o.writers, begin.Format(time.RFC3339Nano))

	dir, err := os.MkdirTemp("", "raftrix-killtest-")
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs after the cluster's processes are killed.
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("RAFTRIX_KILL_KEEP") == "1" {
			t.Logf("kept %s: binary, data dirs n1..n3, logs n1.log..n3.log, acked.txt, kills.txt (seed %d)", dir, o.seed)
			return
		}
		os.RemoveAll(dir)
	})
	ctx, cancel := context.WithTimeout(context.Background(), o.budget)
	defer cancel()

	bin := buildBinary(t, ctx, dir)
	c := startCluster(t, bin, dir)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node logs:\n%s", c.logTails(40))
		}
	})
	t.Logf("nodes %v, data in %s", c.endpoints(), dir)

	db, err := client.New(client.Config{Endpoints: c.endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if d, err := waitHealthy(ctx, c, db, 60*time.Second); err != nil {
		t.Fatalf("cluster not healthy after start: %v", err)
	} else {
		t.Logf("cluster healthy %v after start (+%.1fs)", d.Round(time.Millisecond), since().Seconds())
	}

	l := newLedger(begin)
	wctx, stopWriters := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range o.writers {
		wg.Go(func() { writer(wctx, db, l, o.seed, w) })
	}

	events, nemesisErr := killLoop(ctx, t, c, l, o, since)
	if nemesisErr != nil {
		t.Errorf("kill schedule stopped after %d of %d kills: %v", len(events), o.kills, nemesisErr)
	}
	// A last stretch of writes with every node up.
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
	}
	stopWriters()
	wg.Wait()
	writeKills(t, dir, begin, events)
	for _, e := range c.unexpectedExits() {
		t.Errorf("%s", e)
	}
	// A node that died on its own is a failure already; restart it so that
	// the writes can still be checked.
	for _, n := range c.nodes {
		if !n.running() {
			t.Logf("restarting node %d, which is not running", n.id)
			if err := c.start(n); err != nil {
				t.Error(err)
			}
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("run budget of %v exceeded", o.budget)
	}

	d, err := waitHealthy(ctx, c, db, 60*time.Second)
	if err != nil {
		t.Fatalf("cluster not healthy 60s after the last kill: %v", err)
	}
	t.Logf("cluster healthy %v after the writes stopped (+%.1fs)", d.Round(time.Millisecond), since().Seconds())

	check(ctx, t, c, db, l, dir, o, events, since)
	t.Logf("run took %v", since().Round(time.Millisecond))
}

// killLoop runs the schedule: every 2-4s a random node is killed with
// SIGKILL, stays down 200-800ms, and is restarted on its data dir and port;
// the next interval starts once it answers. All draws come from the seed
// before any waiting, so the schedule does not depend on timing.
func killLoop(ctx context.Context, t *testing.T, c *cluster, l *ledger, o options, since func() time.Duration) ([]killEvent, error) {
	rng := rand.New(rand.NewPCG(o.seed, 0x6b696c6c))
	var events []killEvent
	for k := 1; k <= o.kills; k++ {
		interval := 2*time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))
		victim := c.nodes[rng.IntN(len(c.nodes))]
		pause := 200*time.Millisecond + time.Duration(rng.Int64N(int64(600*time.Millisecond)))

		select {
		case <-time.After(interval):
		case <-ctx.Done():
			return events, ctx.Err()
		}
		if exits := c.unexpectedExits(); len(exits) > 0 {
			return events, fmt.Errorf("a node exited on its own: %s", strings.Join(exits, "; "))
		}
		ackedBefore, _ := l.counts()
		pid, err := c.kill(victim)
		if err != nil {
			return events, err
		}
		e := killEvent{n: k, node: victim.id, pid: pid, killed: since(), ackedAtKill: ackedBefore}
		time.Sleep(pause)
		if err := c.start(victim); err != nil {
			return events, err
		}
		e.restart = since()
		if err := c.waitServing(ctx, victim, 30*time.Second); err != nil {
			return events, err
		}
		e.serving = since() - e.restart
		events = append(events, e)
		acked, failed := l.counts()
		t.Logf("kill %d/%d at +%.1fs: node %d (pid %d) down %v, serving %v after restart; writes acked %d (+%d), failed %d",
			k, o.kills, e.killed.Seconds(), e.node, e.pid, (e.restart - e.killed).Round(time.Millisecond),
			e.serving.Round(time.Millisecond), acked, acked-ackedBefore, failed)
	}
	return events, nil
}

// waitHealthy waits until every node runs and agrees on a leader for every
// range, and a put to every user range succeeds. It returns how long that
// took.
func waitHealthy(ctx context.Context, c *cluster, db *client.DB, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = healthyOnce(ctx, c, db); last == nil {
			return time.Since(start), nil
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return 0, last
		}
	}
}

func healthyOnce(ctx context.Context, c *cluster, db *client.DB) error {
	for _, n := range c.nodes {
		if err := c.waitServing(ctx, n, 2*time.Second); err != nil {
			return err
		}
	}
	ranges, err := c.leadersAgreed(ctx)
	if err != nil {
		return err
	}
	for _, ri := range ranges {
		start := ri.Descriptor_.GetStartKey()
		if bytes.HasPrefix(start, []byte{0xff, 0xff}) {
			continue // the system range; users may not write there
		}
		// start+"\x00..." is in the range unless the range is [start, start+"\x00").
		key := append(append([]byte(nil), start...), "\x00kt-probe"...)
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := db.Put(pctx, key, []byte("probe"))
		cancel()
		if err != nil {
			return fmt.Errorf("probe put to range %d (key %q): %v", ri.Descriptor_.GetRangeId(), key, err)
		}
	}
	return nil
}

// check verifies that every acknowledged write is present with its value,
// first with a linearizable scan and then, once the replicas have converged,
// on every node's own replicas.
func check(ctx context.Context, t *testing.T, c *cluster, db *client.DB, l *ledger, dir string, o options, events []killEvent, since func() time.Duration) {
	acked, failed := l.snapshot()
	writeAcked(t, dir, acked)

	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	kvs, err := db.Scan(sctx, nil, nil, 0)
	cancel()
	if err != nil {
		t.Fatalf("linearizable scan: %v", err)
	}
	present := map[string]string{}
	for _, kv := range kvs {
		if isDataKey(kv.Key) {
			present[string(kv.Key)] = string(kv.Value)
		}
	}
	r := compare(acked, failed, present)

	// Confirm each missing key with a linearizable Get of its own.
	var missingLines []string
	for _, k := range r.missing {
		a := acked[k]
		gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		kv, err := db.Get(gctx, []byte(k))
		cancel()
		got := "absent"
		switch {
		case err != nil:
			got = "error: " + err.Error()
		case kv != nil:
			got = fmt.Sprintf("present with %q", kv.Value)
		}
		missingLines = append(missingLines, fmt.Sprintf("key %q value %q acked at +%.3fs (Put sent at +%.3fs; %s); Get: %s",
			k, a.value, a.acked.Seconds(), a.sent.Seconds(), nearestKill(events, a.sent, a.acked), got))
	}

	codes := l.errorCodes()
	t.Logf("RESULT seed=%d kills=%d/%d: acknowledged %d, present %d, missing %d, wrong value %d; failed writes %d (present %d, absent %d; %s); unknown keys %d; %d keys scanned",
		o.seed, len(events), o.kills, len(acked), len(acked)-len(r.missing)-len(r.wrong), len(r.missing), len(r.wrong),
		len(failed), r.failedPresent, len(failed)-r.failedPresent, codes, len(r.unknown), len(kvs))

	if len(r.missing) > 0 {
		path := filepath.Join(dir, "missing.txt")
		if err := os.WriteFile(path, []byte(strings.Join(missingLines, "\n")+"\n"), 0o644); err != nil {
			t.Error(err)
		}
		t.Errorf("SERIOUS: %d acknowledged writes are missing (seed %d, all listed in %s):\n%s",
			len(r.missing), o.seed, path, strings.Join(firstN(missingLines, 50), "\n"))
	}
	if len(r.wrong) > 0 {
		t.Errorf("SERIOUS: %d acknowledged writes have another value (seed %d):\n%s", len(r.wrong), o.seed, strings.Join(firstN(r.wrong, 50), "\n"))
	}
	if len(r.unknown) > 0 {
		t.Errorf("%d keys present that no writer attempted with that value (seed %d):\n%s", len(r.unknown), o.seed, strings.Join(firstN(r.unknown, 50), "\n"))
	}

	// Every replica: once each range has one applied index on every node, a
	// stale scan of each node's own replicas must hold every acked write.
	deadline := time.Now().Add(30 * time.Second)
	var convErr error
	for {
		if convErr = c.appliedConverged(ctx); convErr == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if convErr != nil {
		t.Logf("replicas did not converge within 30s (%v); skipping the per-node check", convErr)
		return
	}
	for _, n := range c.nodes {
		kvs, err := n.staleScan(ctx)
		if err != nil {
			t.Errorf("node %d: stale scan: %v", n.id, err)
			continue
		}
		local := map[string]string{}
		for _, kv := range kvs {
			if isDataKey(kv.Key) {
				local[string(kv.Key)] = string(kv.Value)
			}
		}
		nr := compare(acked, failed, local)
		t.Logf("node %d replicas (applied indexes converged): acknowledged present %d, missing %d, wrong value %d; failed writes present %d",
			n.id, len(acked)-len(nr.missing)-len(nr.wrong), len(nr.missing), len(nr.wrong), nr.failedPresent)
		if len(nr.missing) > 0 || len(nr.wrong) > 0 || len(nr.unknown) > 0 {
			var qs []string
			for _, k := range firstN(nr.missing, 50) {
				qs = append(qs, fmt.Sprintf("%q", k))
			}
			t.Errorf("SERIOUS: node %d's replicas differ from the acknowledged writes after converging (seed %d): %d missing %v; wrong %v; unknown %v",
				n.id, o.seed, len(nr.missing), qs, firstN(nr.wrong, 20), firstN(nr.unknown, 20))
		}
		if r.failedPresent != nr.failedPresent {
			t.Errorf("node %d holds %d of the failed writes, the linearizable scan %d: replicas diverge", n.id, nr.failedPresent, r.failedPresent)
		}
	}
}

// result compares what was written with what a scan found.
type result struct {
	missing       []string // acked keys absent
	wrong         []string // acked keys with another value (described)
	unknown       []string // present keys never written with that value (described)
	failedPresent int      // failed writes present with their value
}

func compare(acked map[string]write, failed map[string]write, present map[string]string) result {
	var r result
	for k, a := range acked {
		got, ok := present[k]
		switch {
		case !ok:
			r.missing = append(r.missing, k)
		case got != a.value:
			r.wrong = append(r.wrong, fmt.Sprintf("key %q: want %q, have %q", k, a.value, got))
		}
	}
	for k, v := range present {
		if _, ok := acked[k]; ok {
			continue
		}
		if f, ok := failed[k]; ok && f.value == v {
			r.failedPresent++
			continue
		}
		r.unknown = append(r.unknown, fmt.Sprintf("key %q value %q", k, v))
	}
	slices.Sort(r.missing)
	slices.Sort(r.wrong)
	slices.Sort(r.unknown)
	return r
}

// nearestKill describes the kill closest to a write's time in flight.
func nearestKill(events []killEvent, sent, acked time.Duration) string {
	best := -1
	var bestDist time.Duration
	for i, e := range events {
		d := max(e.killed-acked, sent-e.restart, 0)
		if best < 0 || d < bestDist {
			best, bestDist = i, d
		}
	}
	if best < 0 {
		return "no kills"
	}
	e := events[best]
	return fmt.Sprintf("nearest kill #%d: node %d down +%.3fs..+%.3fs", e.n, e.node, e.killed.Seconds(), e.restart.Seconds())
}

func firstN[T any](s []T, n int) []T {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// write is one Put attempt.
type write struct {
	value       string
	sent, acked time.Duration // since the run began; acked is zero if failed
}

// ledger records every write attempt and its outcome.
type ledger struct {
	begin time.Time
	mu    struct {
		sync.Mutex
		acked  map[string]write
		failed map[string]write
		codes  map[string]int // gRPC code of each failure
	}
}

func newLedger(begin time.Time) *ledger {
	l := &ledger{begin: begin}
	l.mu.acked = map[string]write{}
	l.mu.failed = map[string]write{}
	l.mu.codes = map[string]int{}
	return l
}

func (l *ledger) record(key string, w write, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		l.mu.acked[key] = w
		return
	}
	l.mu.failed[key] = w
	l.mu.codes[status.Code(err).String()]++
}

func (l *ledger) counts() (acked, failed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.mu.acked), len(l.mu.failed)
}

func (l *ledger) snapshot() (acked, failed map[string]write) {
	l.mu.Lock()
	defer l.mu.Unlock()
	acked, failed = map[string]write{}, map[string]write{}
	for k, w := range l.mu.acked {
		acked[k] = w
	}
	for k, w := range l.mu.failed {
		failed[k] = w
	}
	return acked, failed
}

func (l *ledger) errorCodes() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var parts []string
	for c, n := range l.mu.codes {
		parts = append(parts, fmt.Sprintf("%s %d", c, n))
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "no errors"
	}
	return strings.Join(parts, ", ")
}

// keyLen is the length of a data key: a spreading byte, then
// "kt/wWW/SSSSSSS".
const keyLen = 1 + len("kt/w00/0000000")

// dataKey returns writer w's seq'th key. Its first byte spreads the keys over
// the evenly split ranges (never 0xFF, so never the system range).
func dataKey(w, seq int) string {
	rest := fmt.Sprintf("kt/w%02d/%07d", w, seq)
	h := fnv.New32a()
	h.Write([]byte(rest))
	return string([]byte{byte(h.Sum32() % 255)}) + rest
}

func isDataKey(k []byte) bool {
	return len(k) == keyLen && bytes.HasPrefix(k[1:], []byte("kt/w"))
}

// writer puts unique keys until ctx ends. A Put counts as acknowledged only
// if it returned success.
func writer(ctx context.Context, db *client.DB, l *ledger, seed uint64, w int) {
	for seq := 0; ctx.Err() == nil; seq++ {
		key := dataKey(w, seq)
		wr := write{value: fmt.Sprintf("%d/w%02d/%07d", seed, w, seq), sent: time.Since(l.begin)}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := db.Put(pctx, []byte(key), []byte(wr.value))
		cancel()
		if err == nil {
			wr.acked = time.Since(l.begin)
		}
		l.record(key, wr, err)
		if err != nil {
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}
}

func writeAcked(t *testing.T, dir string, acked map[string]write) {
	keys := make([]string, 0, len(acked))
	for k := range acked {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		a := acked[k]
		fmt.Fprintf(&b, "%q %q sent=+%.3fs acked=+%.3fs\n", k, a.value, a.sent.Seconds(), a.acked.Seconds())
	}
	if err := os.WriteFile(filepath.Join(dir, "acked.txt"), []byte(b.String()), 0o644); err != nil {
		t.Error(err)
	}
}

func writeKills(t *testing.T, dir string, begin time.Time, events []killEvent) {
	var b strings.Builder
	fmt.Fprintf(&b, "times are since the run began at %s (the node logs' clock)\n", begin.Format(time.RFC3339Nano))
	for _, e := range events {
		fmt.Fprintf(&b, "kill %d: node %d pid %d killed +%.3fs restarted +%.3fs serving after %v (acked before: %d)\n",
			e.n, e.node, e.pid, e.killed.Seconds(), e.restart.Seconds(), e.serving.Round(time.Millisecond), e.ackedAtKill)
	}
	if err := os.WriteFile(filepath.Join(dir, "kills.txt"), []byte(b.String()), 0o644); err != nil {
		t.Error(err)
	}
}

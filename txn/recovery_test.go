package txn_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// The tests in this file kill a coordinator at every step of two-phase
// commit. A dead coordinator is simulated by driving the protocol by hand
// through node.Evaluate and then sending nothing more: no heartbeat, no
// commit, no resolve. The cluster must then (1) never show part of the
// transaction to a linearizable read, (2) let later writes through once the
// transaction can be settled (at once if it committed, after the expiry
// otherwise), and (3) keep no intent behind.

const (
	crashExpiry = 600 * time.Millisecond
	crashRanges = 4
)

// handTxn is a transaction over one key in each of several ranges, driven
// by hand. keys[0] is the primary. Every key is compared to "old"; the
// success branch writes "new" to every key, the failure branch reads them.
type handTxn struct {
	c    *cluster
	via  uint64 // the node the dead coordinator talked to
	id   []byte
	keys [][]byte
	// ts is the priority (when the transaction first started); hb the
	// heartbeat its prepares carry (when this attempt started).
	ts, hb  int64
	lastRev int64
}

func newHandTxn(c *cluster, via uint64, name string, keys [][]byte) *handTxn {
	now := time.Now().UnixNano()
	return &handTxn{c: c, via: via, id: []byte("txn-" + name), keys: keys, ts: now, hb: now}
}

func (h *handTxn) eval(ctx context.Context, req *pb.InternalRequest) (*pb.InternalResponse, error) {
	return h.c.Node(h.via).Evaluate(ctx, req)
}

func (h *handTxn) prepareReq(i int) *pb.InternalRequest {
	k := h.keys[i]
	return &pb.InternalRequest{Key: k, Op: &pb.InternalRequest_Prepare{Prepare: &pb.TxnPrepare{
		TxnId: h.id, PrimaryKey: h.keys[0], Priority: h.ts, Heartbeat: h.hb, WriteRecord: i == 0,
		Compare: []*pb.Compare{valueIs(k, "old")},
		Success: []*pb.IndexedOp{{Index: int32(i), Op: putOp(k, "new")}},
		Failure: []*pb.IndexedOp{{Index: int32(i), Op: getOp(k)}},
	}}}
}

func (h *handTxn) prepare(ctx context.Context, t *testing.T, i int) {
	t.Helper()
	resp, err := h.eval(ctx, h.prepareReq(i))
	if err != nil {
		t.Fatalf("prepare participant %d: %v", i, err)
	}
	p := resp.Prepare
	if p == nil || p.Conflict != nil || p.Aborted || len(p.CompareResults) != 1 || !p.CompareResults[0] {
		t.Fatalf("prepare participant %d: %v", i, resp)
	}
	h.lastRev = max(h.lastRev, p.LastRevision)
}

func (h *handTxn) end(ctx context.Context, commit bool, rev int64) (*pb.TxnRecord, error) {
	resp, err := h.eval(ctx, &pb.InternalRequest{Key: h.keys[0], Op: &pb.InternalRequest_End{End: &pb.TxnEnd{
		TxnId: h.id, PrimaryKey: h.keys[0], Commit: commit, Succeeded: commit, CommitRevision: rev,
	}}})
	if err != nil {
		return nil, err
	}
	return resp.Record, nil
}

func (h *handTxn) resolve(ctx context.Context, rec *pb.TxnRecord, i int, deleteRecord bool) error {
	_, err := h.eval(ctx, &pb.InternalRequest{Key: h.keys[i], Op: &pb.InternalRequest_Resolve{Resolve: &pb.ResolveIntents{
		TxnId: h.id, Record: rec, Keys: [][]byte{h.keys[i]}, PrimaryKey: h.keys[0], DeleteRecord: deleteRecord,
	}}})
	return err
}

// intentOn reports whether some transaction holds key, without settling
// it: a one-range transaction that only reads the key fails with the
// conflicting intent and writes nothing.
func intentOn(ctx context.Context, c *cluster, via uint64, key []byte) (*pb.Intent, error) {
	resp, err := c.Node(via).Evaluate(ctx, &pb.InternalRequest{Key: key, Op: &pb.InternalRequest_OnePc{OnePc: &pb.TxnOnePC{
		Txn: &pb.TxnRequest{Success: []*pb.RequestOp{getOp(key)}},
	}}})
	if err != nil {
		return nil, err
	}
	return resp.Conflict, nil
}

// noIntent checks that key is free of intents, allowing a moment for the
// asynchronous resolution of transactions that have finished.
func noIntent(ctx context.Context, c *cluster, key []byte) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		in, err := intentOn(ctx, c, c.Running()[0], key)
		if err == nil && in == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("intent %v, %v", in, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scanKeys scans, for each key, the span of its range through the range's
// leader, and returns the values of keys. (Scans and reads go to the
// leader directly: see TestSettleFromForwardedRequest for why.)
func scanKeys(ctx context.Context, c *cluster, keys [][]byte) (map[string]*pb.KeyValue, error) {
	want := map[string]bool{}
	ranges := map[int]bool{}
	for _, k := range keys {
		want[string(k)] = true
		ranges[rangeIndexOf(k, c.ranges)] = true
	}
	out := map[string]*pb.KeyValue{}
	for i := range ranges {
		start, end := rangeSpan(i, c.ranges)
		via, err := c.leaderOfKey(ctx, start)
		if err != nil {
			return nil, err
		}
		var cont []byte
		for {
			resp, err := c.KV(via).Scan(ctx, &pb.ScanRequest{Start: start, End: end, Continuation: cont})
			if err != nil {
				return nil, fmt.Errorf("scan range %d via node %d: %w", i+1, via, err)
			}
			for _, kv := range resp.Kvs {
				if want[string(kv.Key)] {
					out[string(kv.Key)] = kv
				}
			}
			if len(resp.Continuation) == 0 {
				break
			}
			cont = resp.Continuation
		}
	}
	return out, nil
}

// readLeaders reads keys with linearizable Gets, each through the leader of
// its range.
func readLeaders(ctx context.Context, c *cluster, keys [][]byte) ([]*pb.KeyValue, error) {
	var out []*pb.KeyValue
	for _, k := range keys {
		via, err := c.leaderOfKey(ctx, k)
		if err != nil {
			return nil, err
		}
		kvs, err := readAll(ctx, c, via, [][]byte{k})
		if err != nil {
			return nil, err
		}
		out = append(out, kvs...)
	}
	return out, nil
}

// putLeader writes key through the leader of its range.
func putLeader(ctx context.Context, c *cluster, key []byte, value string) (*pb.PutResponse, error) {
	via, err := c.leaderOfKey(ctx, key)
	if err != nil {
		return nil, err
	}
	return c.KV(via).Put(ctx, &pb.PutRequest{Key: key, Value: []byte(value)})
}

// readTxn reads keys in one read-only transaction coordinated by node via.
func readTxn(ctx context.Context, c *cluster, via uint64, keys [][]byte) ([]string, error) {
	req := &pb.TxnRequest{}
	for _, k := range keys {
		req.Success = append(req.Success, getOp(k))
	}
	resp, err := c.KV(via).Txn(ctx, req)
	if err != nil {
		return nil, err
	}
	var vs []string
	for _, r := range resp.Responses {
		vs = append(vs, string(r.GetGet().GetKv().GetValue()))
	}
	return vs, nil
}

// readAll reads keys with linearizable Gets through node via.
func readAll(ctx context.Context, c *cluster, via uint64, keys [][]byte) ([]*pb.KeyValue, error) {
	var out []*pb.KeyValue
	for _, k := range keys {
		resp, err := c.KV(via).Get(ctx, &pb.GetRequest{Key: k})
		if err != nil {
			return nil, fmt.Errorf("get %q via node %d: %w", k, via, err)
		}
		out = append(out, resp.Kv)
	}
	return out, nil
}

func values(kvs []*pb.KeyValue) []string {
	var out []string
	for _, kv := range kvs {
		if kv == nil {
			out = append(out, "<absent>")
		} else {
			out = append(out, string(kv.Value))
		}
	}
	return out
}

// watchAtomic reads keys in a loop (Gets, Scans and read-only
// transactions) until stop is closed, and reports every read that shows the
// forbidden value ("new" of a transaction that must not commit, or "old"
// after the commit point).
func watchAtomic(ctx context.Context, c *cluster, keys [][]byte, forbidden string, stop <-chan struct{}) <-chan []string {
	done := make(chan []string, 1)
	go func() {
		var bad []string
		reads := 0
		check := func(what string, vs []string) {
			reads++
			for _, v := range vs {
				if v == forbidden {
					bad = append(bad, fmt.Sprintf("%s: %v", what, vs))
					return
				}
			}
		}
		for i := 0; ; i++ {
			select {
			case <-stop:
				if reads == 0 {
					bad = append(bad, "the watcher read nothing")
				}
				done <- bad
				return
			default:
			}
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if kvs, err := readLeaders(rctx, c, keys); err == nil {
				check("gets", values(kvs))
			}
			if m, err := scanKeys(rctx, c, keys); err == nil {
				var vs []string
				for _, k := range keys {
					vs = append(vs, string(m[string(k)].GetValue()))
				}
				check("scan", vs)
			}
			via := c.Running()[i%len(c.Running())]
			if vs, err := readTxn(rctx, c, via, keys); err == nil {
				check(fmt.Sprintf("read-only txn via node %d", via), vs)
			}
			cancel()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return done
}

func TestCoordinatorCrashAtEveryStep(t *testing.T) {
	c := startCluster(t, 3, crashRanges, crashExpiry)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	for _, tc := range []struct {
		name string
		// prepared lists the participants prepared before the crash (0 is
		// the primary's range, which writes the record).
		prepared []int
		commit   bool
		// resolved lists the participants resolved after the commit.
		resolved []int
	}{
		{name: "prepared-some-no-record", prepared: []int{1, 2}},
		{name: "prepared-some-with-record", prepared: []int{0, 2}},
		{name: "prepared-all", prepared: []int{0, 1, 2}},
		{name: "committed", prepared: []int{0, 1, 2}, commit: true},
		{name: "committed-partly-resolved", prepared: []int{0, 1, 2}, commit: true, resolved: []int{2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys := [][]byte{keyInRange(0, crashRanges, tc.name), keyInRange(1, crashRanges, tc.name), keyInRange(2, crashRanges, tc.name)}
			oldKVs := make([]*pb.PutResponse, len(keys))
			for i, k := range keys {
				resp, err := c.KV(uint64(i%3+1)).Put(ctx, &pb.PutRequest{Key: k, Value: []byte("old")})
				if err != nil {
					t.Fatal(err)
				}
				oldKVs[i] = resp
			}
			h := newHandTxn(c, 1, tc.name, keys)
			for _, i := range tc.prepared {
				h.prepare(ctx, t, i)
			}
			var commitRev int64
			if tc.commit {
				commitRev = max(time.Now().UnixNano(), h.lastRev+1)
				rec, err := h.end(ctx, true, commitRev)
				if err != nil || rec.Status != pb.TxnRecord_COMMITTED {
					t.Fatalf("commit: %v, %v", rec, err)
				}
				for _, i := range tc.resolved {
					if err := h.resolve(ctx, rec, i, false); err != nil {
						t.Fatalf("resolve participant %d: %v", i, err)
					}
				}
			}
			// The coordinator is dead from here on.
			want, forbidden := "old", "new"
			if tc.commit {
				want, forbidden = "new", "old"
			}
			stop := make(chan struct{})
			violations := watchAtomic(ctx, c, keys, forbidden, stop)
			defer func() {
				if stop != nil {
					close(stop)
					<-violations
				}
			}()

			// Before the expiry: every read shows all or nothing of the
			// transaction.
			kvs, err := readLeaders(ctx, c, keys)
			if err != nil {
				t.Fatal(err)
			}
			for i, kv := range kvs {
				if string(kv.GetValue()) != want {
					t.Fatalf("gets right after the crash: %v, want all %q", values(kvs), want)
				}
				if tc.commit && (kv.ModRevision != commitRev || kv.Version != 2 || kv.CreateRevision != oldKVs[i].Kv.CreateRevision) {
					t.Errorf("key %d after commit: %v, want mod=%d ver=2 create=%d", i, kv, commitRev, oldKVs[i].Kv.CreateRevision)
				}
			}
			m, err := scanKeys(ctx, c, keys)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				if string(m[string(k)].GetValue()) != want {
					t.Fatalf("scan right after the crash: %q=%v, want %q", k, m[string(k)], want)
				}
			}
			if tc.commit {
				// (Before the expiry a read-only transaction would wait for
				// the uncommitted one; the watcher runs those.)
				for _, via := range c.Running() {
					vs, err := readTxn(ctx, c, via, keys)
					if err != nil || strings.Join(vs, ",") != strings.Repeat(want+",", 2)+want {
						t.Fatalf("read-only txn via node %d right after the crash: %v, %v; want all %q", via, vs, err, want)
					}
				}
			}
			if tc.commit {
				// Reads resolved the committed intents forward: none of the
				// transaction's is left. (The watcher's read-only
				// transactions hold intents of their own now and then.)
				for i, k := range keys {
					if in, err := intentOn(ctx, c, 2, k); err != nil || bytes.Equal(in.GetTxnId(), h.id) {
						t.Errorf("key %d after reading a committed transaction: intent %v, %v", i, in, err)
					}
				}
			} else if time.Since(time.Unix(0, h.ts)) < crashExpiry {
				// The reads above did not wait; the prepared keys are still
				// locked by the live-looking transaction.
				for _, i := range tc.prepared {
					if in, err := intentOn(ctx, c, 2, keys[i]); err != nil || in == nil || !bytes.Equal(in.TxnId, h.id) {
						t.Errorf("key %d before the expiry: intent %v, %v; want the crashed transaction's", i, in, err)
					}
				}
			}

			// Writes get through: at once after a commit, after the expiry
			// otherwise.
			for i, k := range keys {
				start := time.Now()
				pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
				resp, err := putLeader(pctx, c, k, "after")
				pcancel()
				if err != nil {
					t.Fatalf("put key %d after the crash: %v (after %v)", i, err, time.Since(start))
				}
				wantVer := int64(2)
				if tc.commit {
					wantVer = 3
				}
				if resp.Kv.Version != wantVer || (tc.commit && resp.Kv.ModRevision <= commitRev) {
					t.Errorf("put key %d after the crash: %v, want version %d above revision %d", i, resp.Kv, wantVer, commitRev)
				}
				t.Logf("put key %d after the crash took %v", i, time.Since(start).Round(time.Millisecond))
			}
			close(stop)
			if bad := <-violations; len(bad) > 0 {
				t.Errorf("reads showed part of the transaction (%d times), first: %v", len(bad), bad[:min(3, len(bad))])
			}
			stop = nil

			for i, k := range keys {
				if err := noIntent(ctx, c, k); err != nil {
					t.Errorf("key %d at the end: %v", i, err)
				}
			}

			// Late messages of the dead coordinator change nothing.
			if tc.commit {
				if rec, err := h.end(ctx, false, 0); err != nil || rec.Status != pb.TxnRecord_COMMITTED {
					t.Errorf("late abort of a committed transaction: %v, %v", rec, err)
				}
			} else {
				if rec, err := h.end(ctx, true, time.Now().UnixNano()); err != nil || rec.Status != pb.TxnRecord_ABORTED {
					t.Errorf("late commit of a settled transaction: %v, %v; want ABORTED", rec, err)
				}
				resp, err := h.eval(ctx, h.prepareReq(0))
				if err != nil || !resp.GetPrepare().GetAborted() {
					t.Errorf("late prepare of the primary: %v, %v; want aborted", resp, err)
				}
				// A late prepare of another participant locks its key
				// again, but the record is ABORTED: the next reader and
				// writer settle it at once.
				if _, err := h.eval(ctx, h.prepareReq(2)); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				kvs, err := readLeaders(ctx, c, keys)
				if err != nil || strings.Join(values(kvs), ",") != "after,after,after" {
					t.Errorf("reads after a late prepare: %v, %v", values(kvs), err)
				}
				pctx, pcancel := context.WithTimeout(ctx, crashExpiry/2)
				_, err = putLeader(pctx, c, keys[2], "after")
				pcancel()
				if err != nil {
					t.Errorf("put over a late prepare of an aborted transaction: %v (after %v)", err, time.Since(start))
				}
			}
			kvs, err = readLeaders(ctx, c, keys)
			if err != nil {
				t.Fatal(err)
			}
			for i, kv := range kvs {
				if string(kv.GetValue()) != "after" {
					t.Errorf("key %d at the end: %v", i, kv)
				}
			}
		})
	}
}

// TestConflictingTxnsInOppositeOrderFinish runs two coordinators (on
// different nodes) whose transactions take the same two keys of two ranges,
// named in opposite orders, in a loop: conflicts never wait in a cycle, so
// both loops finish within a bound, and every transaction sees the two
// keys equal (each one writes both).
func TestConflictingTxnsInOppositeOrderFinish(t *testing.T) {
	c := startCluster(t, 3, 2, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b := keyInRange(0, 2, "a"), keyInRange(1, 2, "b")
	for _, k := range [][]byte{a, b} {
		if _, err := c.KV(1).Put(ctx, &pb.PutRequest{Key: k, Value: []byte("init")}); err != nil {
			t.Fatal(err)
		}
	}
	const rounds = 25
	var failed atomic.Int32
	run := func(via uint64, first, second []byte, name string) error {
		for i := 0; i < rounds; i++ {
			// Both keys hold the same value as long as every transaction
			// is atomic: the compare reads one, the success branch checks
			// the other through a get.
			kvs, err := readLeaders(ctx, c, [][]byte{first})
			if err != nil {
				return err
			}
			cur := &pb.GetResponse{Kv: kvs[0]}
			v := fmt.Sprintf("%s-%d", name, i)
			req := &pb.TxnRequest{
				Compare: []*pb.Compare{valueIs(second, string(cur.Kv.GetValue()))},
				Success: []*pb.RequestOp{getOp(first), putOp(second, v), putOp(first, v)},
				Failure: []*pb.RequestOp{getOp(second), getOp(first)},
			}
			tctx, tcancel := context.WithTimeout(ctx, 10*time.Second)
			resp, err := c.KV(via).Txn(tctx, req)
			tcancel()
			if err != nil {
				return fmt.Errorf("%s round %d: %w", name, i, err)
			}
			if resp.Succeeded {
				if got := string(resp.Responses[0].GetGet().GetKv().GetValue()); got != string(cur.Kv.GetValue()) {
					return fmt.Errorf("%s round %d: compare held on %q=%q but %q=%q", name, i, second, cur.Kv.GetValue(), first, got)
				}
			} else {
				// The other transaction won between the get and the
				// transaction; it wrote both keys.
				failed.Add(1)
				x, y := resp.Responses[0].GetGet().GetKv().GetValue(), resp.Responses[1].GetGet().GetKv().GetValue()
				if !bytes.Equal(x, y) {
					return fmt.Errorf("%s round %d: keys differ: %q vs %q", name, i, x, y)
				}
			}
		}
		return nil
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs <- run(1, a, b, "ab") }()
	go func() { defer wg.Done(); errs <- run(2, b, a, "ba") }()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	t.Logf("%d conflicting transactions in %v, %d took the failure branch", 2*rounds, time.Since(start).Round(time.Millisecond), failed.Load())
	kvs, err := readLeaders(ctx, c, [][]byte{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if v := values(kvs); v[0] != v[1] {
		t.Errorf("keys differ at the end: %v", v)
	}
	for _, k := range [][]byte{a, b} {
		if err := noIntent(ctx, c, k); err != nil {
			t.Errorf("%q at the end: %v", k, err)
		}
	}
}

// TestTxnRacingLeaderChange runs transactions over three ranges in a loop
// while the leader node of one participant range is stopped. Every
// transaction either commits atomically or fails; in both cases reads show
// all of it or none of it, and no acknowledged one is lost.
func TestTxnRacingLeaderChange(t *testing.T) {
	const ranges = 3
	c := startCluster(t, 3, ranges, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	keys := [][]byte{keyInRange(0, ranges, "x"), keyInRange(1, ranges, "y"), keyInRange(2, ranges, "z")}
	leaders, err := c.waitLeaders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	victim := leaders[2] // leads the range of keys[1]
	coord := victim%3 + 1
	reader := coord%3 + 1
	if reader == victim {
		reader = coord
	}
	t.Logf("stopping node %d (leader of range 2); coordinator node %d, reader node %d", victim, coord, reader)

	var (
		mu        sync.Mutex
		acked     int // last acknowledged round
		attempted int // last attempted round
		failures  []string
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			v := fmt.Sprint(i)
			req := &pb.TxnRequest{Success: []*pb.RequestOp{putOp(keys[0], v), putOp(keys[1], v), putOp(keys[2], v)}}
			mu.Lock()
			attempted = i
			mu.Unlock()
			tctx, tcancel := context.WithTimeout(ctx, 8*time.Second)
			_, err := c.KV(coord).Txn(tctx, req)
			tcancel()
			mu.Lock()
			if err == nil {
				acked = i
			} else {
				failures = append(failures, fmt.Sprintf("round %d: %v", i, err))
			}
			mu.Unlock()
		}
	}()
	// A reader checks atomicity with read-only transactions, which see a
	// consistent snapshot of the three keys.
	var torn []string
	reads := 0
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			req := &pb.TxnRequest{Success: []*pb.RequestOp{getOp(keys[0]), getOp(keys[1]), getOp(keys[2])}}
			tctx, tcancel := context.WithTimeout(ctx, 8*time.Second)
			resp, err := c.KV(reader).Txn(tctx, req)
			tcancel()
			if err != nil {
				continue
			}
			reads++
			var vs []string
			for _, r := range resp.Responses {
				vs = append(vs, string(r.GetGet().GetKv().GetValue()))
			}
			if vs[0] != vs[1] || vs[1] != vs[2] {
				torn = append(torn, strings.Join(vs, ","))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	time.Sleep(400 * time.Millisecond)
	c.Stop(victim)
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("rounds attempted %d, acknowledged %d, failed %d; %d consistent reads", attempted, acked, len(failures), reads)
	for _, f := range failures {
		t.Logf("failed %s", f)
	}
	if len(torn) > 0 {
		t.Errorf("read-only transactions saw a partial transaction: %v", torn)
	}
	if acked == 0 {
		t.Fatalf("no transaction was acknowledged")
	}
	if _, err := c.waitLeaders(ctx); err != nil {
		t.Fatal(err)
	}
	// Every key shows the same round: no partial transaction, and not an
	// older one than the last acknowledged (a failed one may have
	// committed after all).
	for _, via := range c.Running() {
		vs, err := readTxn(ctx, c, via, keys)
		if err != nil {
			t.Fatal(err)
		}
		if vs[0] != vs[1] || vs[1] != vs[2] {
			t.Errorf("read-only txn via node %d after the run: %v", via, vs)
		}
		var got int
		if _, err := fmt.Sscan(vs[0], &got); err != nil || got < acked || got > attempted {
			t.Errorf("read-only txn via node %d after the run: round %q, last acknowledged %d, last attempted %d", via, vs[0], acked, attempted)
		}
	}
	kvs, err := readLeaders(ctx, c, keys)
	if err != nil {
		t.Fatal(err)
	}
	if vs := values(kvs); vs[0] != vs[1] || vs[1] != vs[2] {
		t.Errorf("gets after the run: %v", vs)
	}
	for i, k := range keys {
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := putLeader(pctx, c, k, "end")
		pcancel()
		if err != nil {
			t.Errorf("put key %d after the run: %v", i, err)
		}
		if err := noIntent(ctx, c, k); err != nil {
			t.Errorf("key %d after the run: %v", i, err)
		}
	}
}

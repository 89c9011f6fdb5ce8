package nemesis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftrix/raftrixdb/internal/faultcluster"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// workload is what the clients of one run share.
type workload struct {
	c       *faultcluster.Cluster
	cfg     Config
	nodes   []uint64
	regKeys []string
	// budget is the number of operations left to start.
	budget atomic.Int64
	// meanThink spaces a client's operations so that the run lasts long
	// enough for the nemesis to act.
	meanThink time.Duration
	// lulls are periods (from the run's start) in which every client stays
	// idle, so that ranges quiesce and faults hit quiesced ranges too.
	lulls []lull
	start time.Time

	outcomes [4]atomic.Int64 // by outcome
}

// take claims one operation from the budget.
func (w *workload) take() bool { return w.budget.Add(-1) >= 0 }

func (w *workload) think(ctx context.Context, rng *rand.Rand) {
	d := time.Duration(rng.ExpFloat64() * float64(w.meanThink))
	at := time.Since(w.start) + d
	for _, l := range w.lulls {
		if at >= l.from && at < l.to {
			d += l.to - at
		}
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

type lull struct{ from, to time.Duration }

// drawLulls draws idle periods of 0.5-1.5s every 2-6s over total.
func drawLulls(rng *rand.Rand, total time.Duration) []lull {
	var ls []lull
	at := time.Duration(0)
	for at < total {
		at += time.Duration(2000+rng.IntN(4000)) * time.Millisecond
		d := time.Duration(500+rng.IntN(1000)) * time.Millisecond
		ls = append(ls, lull{from: at, to: at + d})
		at += d
	}
	return ls
}

func (w *workload) countOutcome(o outcome) { w.outcomes[o].Add(1) }

// keyInRange returns a key that the even bootstrap split puts in range i (0
// based) of n: the split is by the first two key bytes.
func keyInRange(i, n int, suffix string) string {
	v := uint32(i) * (1 << 16) / uint32(n)
	return string([]byte{byte(v >> 8), byte(v)}) + suffix
}

// The set workload: clients insert distinct keys with put-if-absent. After
// the run and the final heal, a linearizable scan must hold every
// acknowledged insert and none that failed definitely.

const setMarker = "/set/"

type setState struct {
	mu       sync.Mutex
	acked    map[string]bool
	failed   map[string]bool
	unknown  map[string]bool
	anomaly  []string
	attempts int
}

func newSetState() *setState {
	return &setState{acked: map[string]bool{}, failed: map[string]bool{}, unknown: map[string]bool{}}
}

type setClient struct {
	id, clients int
	rng         *rand.Rand
	w           *workload
	s           *setState
}

func (c *setClient) run(ctx context.Context) {
	for n := c.id; ctx.Err() == nil && c.w.take(); n += c.clients {
		c.w.think(ctx, c.rng)
		if ctx.Err() != nil {
			return
		}
		key := keyInRange(n%c.w.cfg.Ranges, c.w.cfg.Ranges, fmt.Sprintf("%s%07d", setMarker, n))
		nodeID := c.w.nodes[c.rng.IntN(len(c.w.nodes))]
		octx, cancel := context.WithTimeout(ctx, c.w.cfg.OpTimeout)
		_, err := c.w.c.KV(nodeID).Put(octx, &pb.PutRequest{Key: []byte(key), Value: []byte("x"), IfAbsent: true})
		cancel()
		o := classify(err)
		c.w.countOutcome(o)
		c.s.mu.Lock()
		c.s.attempts++
		switch o {
		case outOK:
			c.s.acked[key] = true
		case outFailed:
			c.s.failed[key] = true
		case outUnknown:
			c.s.unknown[key] = true
		case outCompareFailed:
			// Nobody wrote this key before: the insert must not find it.
			c.s.anomaly = append(c.s.anomaly, fmt.Sprintf("insert of fresh key %q via node %d found it existing: %v", key, nodeID, err))
		}
		c.s.mu.Unlock()
	}
}

// check compares the keys a final scan found with what the clients saw.
func (s *setState) check(found map[string]bool) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var v []string
	v = append(v, s.anomaly...)
	var lost, revived, phantom []string
	for k := range s.acked {
		if !found[k] {
			lost = append(lost, k)
		}
	}
	for k := range s.failed {
		if found[k] {
			revived = append(revived, k)
		}
	}
	for k := range found {
		if !s.acked[k] && !s.failed[k] && !s.unknown[k] {
			phantom = append(phantom, k)
		}
	}
	for _, l := range []struct {
		what string
		keys []string
	}{
		{"acknowledged inserts missing from the final scan", lost},
		{"inserts that failed definitely but are present", revived},
		{"keys present that no client inserted", phantom},
	} {
		if len(l.keys) > 0 {
			sort.Strings(l.keys)
			v = append(v, fmt.Sprintf("set: %d %s: %s", len(l.keys), l.what, abbreviate(l.keys, 10)))
		}
	}
	return v
}

func abbreviate(keys []string, n int) string {
	q := make([]string, 0, n)
	for i, k := range keys {
		if i == n {
			q = append(q, fmt.Sprintf("... (%d more)", len(keys)-n))
			break
		}
		q = append(q, fmt.Sprintf("%q", k))
	}
	return strings.Join(q, ", ")
}

// scanSetKeys reads every set key with linearizable scans, page by page,
// retrying a failed page through another node until ctx ends.
func scanSetKeys(ctx context.Context, c *faultcluster.Cluster, nodes []uint64) (map[string]bool, error) {
	found := map[string]bool{}
	var cont []byte
	var lastErr error
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("final scan: %v (last error: %v)", ctx.Err(), lastErr)
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := c.KV(nodes[attempt%len(nodes)]).Scan(sctx, &pb.ScanRequest{Limit: 1000, KeysOnly: true, Continuation: cont})
		cancel()
		if err != nil {
			lastErr = err
			time.Sleep(50 * time.Millisecond)
			continue
		}
		for _, kv := range resp.Kvs {
			if k := string(kv.Key); strings.Contains(k, setMarker) {
				found[k] = true
			}
		}
		if len(resp.Continuation) == 0 {
			return found, nil
		}
		cont = resp.Continuation
	}
}

package node_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/raftrix/raftrixdb/node"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// startNodes starts count nodes in this process, of a cluster whose peers
// are all count nodes plus extra more that never start, each with an HTTP
// endpoint on a free loopback port. configure, if set, adjusts each node's
// configuration. The nodes stop when the test ends.
func startNodes(t *testing.T, count, extra, ranges int, configure func(id uint64, cfg *node.Config)) []*node.Node {
	t.Helper()
	dir := t.TempDir()
	peers := map[uint64]string{}
	grpcLis := map[uint64]net.Listener{}
	for id := uint64(1); id <= uint64(count+extra); id++ {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		peers[id] = lis.Addr().String()
		if id > uint64(count) {
			lis.Close() // a peer that is down: nothing listens there
			continue
		}
		grpcLis[id] = lis
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var nodes []*node.Node
	for id := uint64(1); id <= uint64(count); id++ {
		httpLis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg := node.Config{
			NodeID:        id,
			DataDir:       filepath.Join(dir, fmt.Sprintf("n%d", id)),
			Listener:      grpcLis[id],
			HTTPListener:  httpLis,
			Peers:         peers,
			InitialRanges: ranges,
			TickInterval:  20 * time.Millisecond,
			Logger:        logger,
			Registry:      prometheus.NewRegistry(),
		}
		if configure != nil {
			configure(id, &cfg)
		}
		n, err := node.New(cfg)
		if err != nil {
			t.Fatalf("start node %d: %v", id, err)
		}
		t.Cleanup(n.Stop)
		nodes = append(nodes, n)
	}
	return nodes
}

// httpGet fetches a node's HTTP path and returns the status and body.
func httpGet(t *testing.T, n *node.Node, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + n.HTTPAddr() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

// waitReady polls /readyz until it answers 200.
func waitReady(t *testing.T, nodes ...*node.Node) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range nodes {
		for {
			code, body := httpGet(t, n, "/readyz")
			if code == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d not ready after 30s: %d %s", n.ID(), code, body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestHTTPEndpoints(t *testing.T) {
	n := startNodes(t, 1, 0, 4, nil)[0]
	if code, body := httpGet(t, n, "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	waitReady(t, n)

	code, body := httpGet(t, n, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, name := range []string{
		"raftrix_raft_applied_entries_total",            // the node's own
		"go_goroutines", "go_memstats_heap_alloc_bytes", // Go runtime
		"process_cpu_seconds_total", "process_open_fds", // process
	} {
		if !strings.Contains(body, "\n"+name+" ") {
			t.Errorf("/metrics has no %s", name)
		}
	}

	for path, want := range map[string]string{
		"/debug/pprof/":                   "goroutine",
		"/debug/pprof/goroutine?debug=1":  "goroutine profile:",
		"/debug/pprof/heap?debug=1":       "heap profile:",
		"/debug/pprof/cmdline":            os.Args[0],
		"/debug/pprof/profile?seconds=1":  "", // binary
		"/debug/pprof/trace?seconds=0.05": "",
		"/debug/pebble":                   "Compactions:",
	} {
		code, body := httpGet(t, n, path)
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("%s: %d, body without %q", path, code, want)
		}
	}
	if code, _ := httpGet(t, n, "/nothing"); code != http.StatusNotFound {
		t.Errorf("/nothing: %d, want 404", code)
	}

	addr := n.HTTPAddr()
	n.Stop()
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Fatal("the HTTP endpoint still answers after Stop")
	}
}

func TestReadyzWithoutLeaders(t *testing.T) {
	// Node 1 of 3 alone: its ranges (4 plus the system range) cannot elect
	// a leader.
	n := startNodes(t, 1, 2, 4, nil)[0]
	time.Sleep(300 * time.Millisecond) // several election timeouts at 20ms ticks
	code, body := httpGet(t, n, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "5 of 5 local ranges know no leader") {
		t.Fatalf("/readyz: %d %q, want 503 with the leaderless ranges", code, body)
	}
	if code, _ := httpGet(t, n, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d: a live node that is not ready is still healthy", code)
	}
}

func TestNoHTTPEndpointByDefault(t *testing.T) {
	n := startNodes(t, 1, 0, 1, func(_ uint64, cfg *node.Config) { cfg.HTTPListener.Close(); cfg.HTTPListener = nil })[0]
	if n.HTTPAddr() != "" {
		t.Fatalf("HTTPAddr = %q without HTTPAddr or HTTPListener", n.HTTPAddr())
	}
}

func TestHTTPNeedsAGatherer(t *testing.T) {
	_, err := node.New(node.Config{
		NodeID: 1, DataDir: t.TempDir(), ListenAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Peers:    map[uint64]string{1: "127.0.0.1:1"},
		Registry: registererOnly{prometheus.NewRegistry()},
	})
	if err == nil || !strings.Contains(err.Error(), "Config.Gatherer") {
		t.Fatalf("New with a Registerer that cannot gather: %v", err)
	}
}

// registererOnly hides the Gatherer side of a registry.
type registererOnly struct{ prometheus.Registerer }

// scrape fetches and parses a node's /metrics.
func scrape(t *testing.T, n *node.Node) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := httpGet(t, n, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("node %d /metrics: %d", n.ID(), code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("node %d /metrics does not parse: %v", n.ID(), err)
	}
	return mfs
}

// sum adds up a counter's or gauge's samples, or a histogram's sample counts.
func sum(mfs map[string]*dto.MetricFamily, name string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
	var v float64
	for _, m := range mf.GetMetric() {
		v += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
	}
	return v, true
}

// TestMetricsMoveUnderLoad runs writes on a 3-node cluster and checks, over
// each node's /metrics, that the metrics operators graph exist and move.
func TestMetricsMoveUnderLoad(t *testing.T) {
	nodes := startNodes(t, 3, 0, 8, nil)
	waitReady(t, nodes...)
	before := map[uint64]map[string]*dto.MetricFamily{}
	for _, n := range nodes {
		before[n.ID()] = scrape(t, n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(nodes))
	for _, n := range nodes {
		conn, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		kv := pb.NewKVClient(conn)
		wg.Go(func() {
			for i := range 100 {
				key := fmt.Appendf(nil, "%c-load-%d-%d", 'a'+i%26, n.ID(), i)
				if _, err := kv.Put(ctx, &pb.PutRequest{Key: key, Value: []byte("v")}); err != nil {
					errs <- fmt.Errorf("put through node %d: %w", n.ID(), err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Followers apply what the leader acknowledged a moment later.
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range nodes {
		for {
			problems := metricsProblems(before[n.ID()], scrape(t, n))
			if len(problems) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d: %s", n.ID(), strings.Join(problems, "; "))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// metricsProblems lists what is wrong with a node's metrics after 300 puts.
func metricsProblems(before, after map[string]*dto.MetricFamily) []string {
	var out []string
	for _, name := range []string{
		"raftrix_raft_applied_entries_total",
		"raftrix_engine_raft_sync_seconds",
		"raftrix_raft_messages_sent_total",
		"raftrix_raft_ready_batch_ranges",
	} {
		b, _ := sum(before, name)
		a, ok := sum(after, name)
		switch {
		case !ok:
			out = append(out, name+" missing from /metrics")
		case a <= b:
			out = append(out, fmt.Sprintf("%s did not move under load: %v -> %v", name, b, a))
		}
	}
	// Every node holds a replica of every range, so it applies every put.
	if a, _ := sum(after, "raftrix_raft_applied_entries_total"); a < 300 {
		out = append(out, fmt.Sprintf("applied %v entries, want at least the 300 puts", a))
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if v, ok := sum(after, name); !ok || v <= 0 {
			out = append(out, fmt.Sprintf("%s = %v (present: %v)", name, v, ok))
		}
	}
	return out
}

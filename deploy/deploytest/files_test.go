package deploytest

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftrix/raftrixdb/node"
)

// These tests check deploy/'s files without Docker, in every test run.

func deployDir(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..")
}

// exportedMetrics starts a node and returns the sample names of its
// /metrics (histograms as _bucket, _sum and _count).
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.New(node.Config{
		NodeID: 1, DataDir: t.TempDir(), ListenAddr: "127.0.0.1:0", HTTPListener: httpLis,
		Peers: map[uint64]string{1: "127.0.0.1:1"}, Registry: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	resp, err := http.Get("http://" + n.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	names := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		names[regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*`).FindString(line)] = true
	}
	return names
}

// TestDashboardUsesExistingMetrics: every metric a Grafana panel queries is
// one a node exports (or Prometheus's own "up").
func TestDashboardUsesExistingMetrics(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(deployDir(t), "grafana", "raftrix.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("raftrix.json: %v", err)
	}
	exported := exportedMetrics(t)
	metricRE := regexp.MustCompile(`\b((?:raftrix|go|process)_[a-zA-Z0-9_]+|up)\{`)
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			ms := metricRE.FindAllStringSubmatch(tg.Expr, -1)
			if len(ms) == 0 {
				t.Errorf("panel %q: no metric found in %q", p.Title, tg.Expr)
			}
			for _, m := range ms {
				used[m[1]] = true
				if m[1] != "up" && !exported[m[1]] {
					t.Errorf("panel %q queries %s, which no node exports", p.Title, m[1])
				}
			}
		}
	}
	// The node's own metrics should all be on the dashboard. A missing one
	// is only logged: a new metric must not fail its author's tests.
	for name := range exported {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if !strings.HasPrefix(name, "raftrix_") {
			continue
		}
		if !used[name] && !used[base+"_bucket"] && !used[base+"_sum"] && !used[base+"_count"] {
			t.Logf("NOTE: %s is exported but on no panel of deploy/grafana/raftrix.json: add one (see deploy/README.md)", name)
		}
	}
}

// TestPrometheusScrapesTheComposeNodes: prometheus.yml scrapes every node
// of the compose file on the HTTP port the nodes listen on.
func TestPrometheusScrapesTheComposeNodes(t *testing.T) {
	prom, err := os.ReadFile(filepath.Join(deployDir(t), "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	compose, err := os.ReadFile(filepath.Join(deployDir(t), "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(compose), "--http-addr=0.0.0.0:8080"); got != 3 {
		t.Errorf("docker-compose.yml: %d nodes serve HTTP on :8080, want 3", got)
	}
	for _, target := range []string{`"node1:8080"`, `"node2:8080"`, `"node3:8080"`} {
		if !strings.Contains(string(prom), target) {
			t.Errorf("prometheus.yml does not scrape %s", target)
		}
	}
}

package main

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultHTTPAddr(t *testing.T) {
	for _, tc := range []struct{ flag, listen, want, err string }{
		{"", "0.0.0.0:7001", "127.0.0.1:8001", ""},
		{"", "10.0.0.5:7003", "127.0.0.1:8003", ""},
		{"", "127.0.0.1:0", "127.0.0.1:0", ""},
		{"off", "127.0.0.1:7001", "", ""},
		{"0.0.0.0:9090", "127.0.0.1:7001", "0.0.0.0:9090", ""},
		{"", "127.0.0.1:65000", "", "cannot derive --http-addr"},
		{"9090", "127.0.0.1:7001", "", `invalid --http-addr "9090"`},
	} {
		got, err := defaultHTTPAddr(tc.flag, tc.listen)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || exitCode(err) != exitUsage {
				t.Errorf("defaultHTTPAddr(%q, %q) = %q, %v; want a usage error with %q", tc.flag, tc.listen, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("defaultHTTPAddr(%q, %q) = %q, %v; want %q", tc.flag, tc.listen, got, err, tc.want)
		}
	}
}

// TestStartServesHTTP runs "raftrix start --http-addr" and reads the
// node's readiness and metrics over HTTP.
func TestStartServesHTTP(t *testing.T) {
	addr, httpAddr := deadAddr(t), deadAddr(t)
	var out, logs syncBuffer
	stop := background(t, &out, &logs, "start", "--id=1", "--peers=1="+addr, "--insecure",
		"--data-dir="+filepath.Join(t.TempDir(), "n1"), "--ranges=2", "--tick=20ms", "--http-addr="+httpAddr)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	eventually(t, 20*time.Second, "/readyz to answer 200", func() bool {
		code, _ := get("/readyz")
		return code == http.StatusOK
	})
	code, body := get("/metrics")
	if code != http.StatusOK || !strings.Contains(body, "raftrix_raft_applied_entries_total") || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	if code := stop(); code != exitOK {
		t.Fatalf("start exited %d; logs:\n%s", code, logs.String())
	}
}

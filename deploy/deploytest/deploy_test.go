package deploytest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// testBudget bounds the whole test, image build included.
const testBudget = 4*time.Minute + 30*time.Second

// keysPerPhase is how many keys each phase writes.
const keysPerPhase = 15

var services = []string{"node1", "node2", "node3"}

// env is one deploy test run: its names and what it has found.
type env struct {
	t        *testing.T
	ctx      context.Context
	root     string // repository root
	project  string // compose project, random
	image    string // image tag, random
	compose  []string
	certs    string // client certificates on the host
	cli      string // the raftrix binary taken from the image
	acked    map[string]string
	written  int
	baseEnvs []string
}

func TestDeploy(t *testing.T) {
	if os.Getenv("RAFTRIX_DEPLOY_TEST") != "1" {
		t.Skip("SKIP: the deploy test runs with RAFTRIX_DEPLOY_TEST=1 (deploy/test.sh, make test-deploy)")
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Skipf("SKIP: no Docker engine (docker info: %v: %s)", err, firstLine(out))
	}
	ctx, cancel := context.WithTimeout(context.Background(), testBudget)
	defer cancel()
	_, file, _, _ := runtime.Caller(0)
	e := &env{
		t: t, ctx: ctx,
		root:    filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..")),
		project: "rxdeploy" + randomHex(4),
		image:   "raftrix-deploytest:" + randomHex(4),
		acked:   map[string]string{},
	}
	e.compose = composeCommand(t)
	e.baseEnvs = []string{
		"RAFTRIX_IMAGE=" + e.image,
		"RAFTRIX_RANGES=8",
		// Empty: publish on free loopback ports, so that the test never
		// collides with a cluster or demo of the developer's.
		"RAFTRIX_NODE1_GRPC_PORT=", "RAFTRIX_NODE2_GRPC_PORT=", "RAFTRIX_NODE3_GRPC_PORT=",
		"RAFTRIX_NODE1_HTTP_PORT=", "RAFTRIX_NODE2_HTTP_PORT=", "RAFTRIX_NODE3_HTTP_PORT=",
	}
	t.Cleanup(e.cleanup)
	start := time.Now()

	e.step("build the image FROM scratch", func() {
		e.must(3*time.Minute, filepath.Join(e.root, "deploy", "build-image.sh"), e.image)
	})
	e.step("validate the compose file", func() {
		e.must(30*time.Second, e.compose[0], append(e.compose[1:], "-f", e.composeFile(), "config", "-q")...)
	})
	e.step("create certificates with deploy/certs.sh", func() {
		e.mustEnv(time.Minute, []string{"COMPOSE=" + strings.Join(e.compose, " ")},
			filepath.Join(e.root, "deploy", "certs.sh"), "-p", e.project)
		e.extractFromImage()
	})
	e.step("start the 3-node TLS cluster", func() {
		e.composeMust(time.Minute, "up", "-d", "node1", "node2", "node3")
		e.waitReady(services...)
		e.checkMetrics("node1")
	})
	e.step("write and read with every node up", func() {
		e.writePhase("healthy")
		// The CLI in a container on the cluster's network, by service name.
		key := "deploy/in-network"
		e.composeMust(time.Minute, "run", "--rm", "-T", "tool", "kv", "put", key, "v",
			"--endpoints=node1:7001,node2:7001,node3:7001", "--certs-dir=/certs", "--timeout=20s")
		e.written++
		e.acked[key] = "v"
		e.checkAll(e.endpoints(), false)
	})
	e.step("stop node2, write and read, start it again", func() {
		e.composeMust(time.Minute, "stop", "-t", "10", "node2")
		e.writePhase("node2-stopped")
		e.checkAll(e.endpoints(), false)
		e.composeMust(time.Minute, "start", "node2")
		e.waitReady("node2")
	})
	e.step("disconnect node3 from the network, write and read, reconnect it", func() {
		network, id := e.project+"_raftrix", e.containerID("node3")
		e.must(30*time.Second, "docker", "network", "disconnect", network, id)
		e.writePhase("node3-partitioned")
		e.checkAll(e.endpoints(), false)
		// The compose service name is an alias on the network; reconnecting
		// must restore it, or the peers could not resolve node3.
		e.must(30*time.Second, "docker", "network", "connect", "--alias", "node3", network, id)
		e.waitReady("node3")
	})
	e.step("every acknowledged write is on every node", func() {
		e.checkAll(e.endpoints(), false)
		for _, s := range services {
			deadline := time.Now().Add(30 * time.Second)
			for {
				err := e.check([]string{e.port(s, "7001")}, true)
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s's own replicas: %v", s, err)
				}
				time.Sleep(500 * time.Millisecond)
			}
		}
	})
	t.Logf("%d writes acknowledged of %d attempts; whole test %v", len(e.acked), e.written, time.Since(start).Round(time.Second))
}

func (e *env) step(name string, f func()) {
	e.t.Helper()
	start := time.Now()
	f()
	e.t.Logf("ok %-70s %v", name, time.Since(start).Round(100*time.Millisecond))
}

func (e *env) composeFile() string { return filepath.Join(e.root, "deploy", "docker-compose.yml") }

// run runs a command with the test's environment, bounded by timeout and
// by the test's budget.
func (e *env) run(timeout time.Duration, extraEnv []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(e.ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(append(os.Environ(), e.baseEnvs...), extraEnv...)
	cmd.Dir = e.root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return out.String(), err
}

func (e *env) mustEnv(timeout time.Duration, extraEnv []string, name string, args ...string) string {
	e.t.Helper()
	out, err := e.run(timeout, extraEnv, name, args...)
	if err != nil {
		e.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func (e *env) must(timeout time.Duration, name string, args ...string) string {
	e.t.Helper()
	return e.mustEnv(timeout, nil, name, args...)
}

func (e *env) composeArgs(args ...string) []string {
	return append(append(slices.Clone(e.compose[1:]), "-p", e.project, "-f", e.composeFile()), args...)
}

func (e *env) composeMust(timeout time.Duration, args ...string) string {
	e.t.Helper()
	return e.must(timeout, e.compose[0], e.composeArgs(args...)...)
}

// extractFromImage copies the client certificates out of the certs volume,
// and the raftrix binary out of the image: the CLI the test runs on this
// host is the image's own.
func (e *env) extractFromImage() {
	e.t.Helper()
	dir := e.t.TempDir()
	id := strings.TrimSpace(e.must(30*time.Second, "docker", "create", "-v", e.project+"_certs:/certs", e.image))
	defer e.run(30*time.Second, nil, "docker", "rm", "-f", id)
	e.certs = filepath.Join(dir, "certs")
	e.cli = filepath.Join(dir, "raftrix")
	e.must(30*time.Second, "docker", "cp", id+":/certs/.", e.certs)
	e.must(30*time.Second, "docker", "cp", id+":/raftrix", e.cli)
	for _, f := range []string{"ca.crt", "client.crt", "client.key", "node.1.crt", "node.3.key"} {
		if _, err := os.Stat(filepath.Join(e.certs, f)); err != nil {
			e.t.Fatalf("certs.sh made no %s: %v", f, err)
		}
	}
}

func (e *env) containerID(service string) string {
	e.t.Helper()
	return strings.TrimSpace(e.composeMust(30*time.Second, "ps", "-q", service))
}

// port returns the host address a service's container port is published
// on, or "" if it is not (stopped, disconnected). It changes when a
// container restarts or reconnects.
func (e *env) port(service, containerPort string) string {
	out, err := e.run(30*time.Second, nil, e.compose[0], e.composeArgs("port", service, containerPort)...)
	addr := strings.TrimSpace(out)
	if err != nil || !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		return ""
	}
	return addr
}

// endpoints returns the gRPC addresses of the nodes that are published.
func (e *env) endpoints() []string {
	var eps []string
	for _, s := range services {
		if p := e.port(s, "7001"); p != "" {
			eps = append(eps, p)
		}
	}
	return eps
}

func (e *env) httpGet(service, path string) (int, string) {
	addr := e.port(service, "8080")
	if addr == "" {
		return 0, "not published"
	}
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitReady waits until /readyz of each service answers 200.
func (e *env) waitReady(names ...string) {
	e.t.Helper()
	for _, s := range names {
		deadline := time.Now().Add(60 * time.Second)
		for {
			code, body := e.httpGet(s, "/readyz")
			if code == http.StatusOK {
				break
			}
			if time.Now().After(deadline) || e.ctx.Err() != nil {
				e.t.Fatalf("%s not ready after 60s: %d %s", s, code, body)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
}

func (e *env) checkMetrics(service string) {
	e.t.Helper()
	code, body := e.httpGet(service, "/metrics")
	for _, name := range []string{"raftrix_raft_applied_entries_total", "raftrix_engine_raft_sync_seconds_count", "go_goroutines", "process_cpu_seconds_total"} {
		if code != http.StatusOK || !strings.Contains(body, "\n"+name) {
			e.t.Fatalf("%s /metrics (%d) has no %s", service, code, name)
		}
	}
}

// cli runs the host-side CLI with the client certificate.
func (e *env) runCLI(eps []string, args ...string) (string, error) {
	args = append(args, "--endpoints="+strings.Join(eps, ","), "--certs-dir="+e.certs, "--timeout=10s")
	return e.run(30*time.Second, nil, e.cli, args...)
}

// writePhase writes keysPerPhase keys through every published node. A
// cluster with two of three nodes must acknowledge every one; a write that
// fails is retried (with the same value), up to three times.
func (e *env) writePhase(phase string) {
	e.t.Helper()
	eps := e.endpoints()
	for i := range keysPerPhase {
		key := fmt.Sprintf("deploy/%s/%02d", phase, i)
		val := fmt.Sprintf("%s-%d", phase, i)
		var out string
		var err error
		for try := 0; try < 3; try++ {
			e.written++
			if out, err = e.runCLI(eps, "kv", "put", key, val); err == nil {
				break
			}
			time.Sleep(time.Second)
			eps = e.endpoints()
		}
		if err != nil {
			e.t.Fatalf("put %s during %s: %v: %s", key, phase, err, out)
		}
		e.acked[key] = val
	}
}

// checkAll fails the test unless check passes.
func (e *env) checkAll(eps []string, stale bool) {
	e.t.Helper()
	if err := e.check(eps, stale); err != nil {
		e.t.Fatal(err)
	}
}

// check scans the test's keys through eps (stale: from the first node's
// own replicas) and compares them with the acknowledged writes.
func (e *env) check(eps []string, stale bool) error {
	args := []string{"kv", "scan", "deploy/", "deploy0"}
	if stale {
		args = append(args, "--stale")
	}
	out, err := e.runCLI(eps, args...)
	if err != nil {
		return fmt.Errorf("scan through %v: %v: %s", eps, err, out)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(line, "\t"); ok {
			got[k] = v
		}
	}
	var missing []string
	for k, v := range e.acked {
		if got[k] != v {
			missing = append(missing, fmt.Sprintf("%s=%q (got %q)", k, v, got[k]))
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("through %v: %d of %d acknowledged writes missing: %s", eps, len(missing), len(e.acked), strings.Join(missing, ", "))
	}
	return nil
}

// cleanup removes everything the test created, with its own time budget:
// the test's may be spent.
func (e *env) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	run := func(name string, args ...string) string {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Env = append(os.Environ(), e.baseEnvs...)
		cmd.Dir = e.root
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	if e.t.Failed() {
		e.t.Logf("node logs:\n%s", run(e.compose[0], e.composeArgs("logs", "--no-color", "--tail", "40", "node1", "node2", "node3")...))
	}
	run(e.compose[0], e.composeArgs("down", "-v", "--remove-orphans", "-t", "5")...)
	run("docker", "rmi", "-f", e.image)
	if left := run("docker", "ps", "-aq", "--filter", "label=com.docker.compose.project="+e.project); strings.TrimSpace(left) != "" {
		e.t.Errorf("containers left behind: %s", left)
	}
}

// composeCommand returns docker-compose, or "docker compose" where only the
// plugin exists; it skips the test when neither does.
func composeCommand(t *testing.T) []string {
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}
	}
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	t.Skip("SKIP: neither docker-compose nor the docker compose plugin is installed")
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

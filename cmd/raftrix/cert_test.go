package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// makeCertsDir creates, through the CLI, a CA, nodes 1..nodes for
// 127.0.0.1 and localhost, and a client "alice".
func makeCertsDir(t *testing.T, nodes int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	out := mustRun(t, "cert", "create-ca", "--certs-dir", dir)
	if out != fmt.Sprintf("created %s\ncreated %s\n", filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")) {
		t.Fatalf("create-ca printed %q", out)
	}
	for id := 1; id <= nodes; id++ {
		mustRun(t, "cert", "create-node", "--certs-dir", dir, "--node-id", fmt.Sprint(id), "--hosts", "127.0.0.1,localhost")
	}
	mustRun(t, "cert", "create-client", "--certs-dir", dir, "--name", "alice", "--lifetime", "24h")
	return dir
}

func TestCertCommands(t *testing.T) {
	dir := makeCertsDir(t, 2)
	out := mustRun(t, "cert", "list", "--certs-dir", dir)
	for _, want := range []string{
		"FILE", "ca.crt      ca      RaftrixDB CA",
		"client.crt  client  alice",
		"node.1.crt  node    node.1", "localhost,127.0.0.1",
		"node.2.crt  node    node.2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("cert list has no %q:\n%s", want, out)
		}
	}
	if lines := strings.Count(out, "\n"); lines != 5 {
		t.Errorf("cert list printed %d lines, want a header and 4 certificates:\n%s", lines, out)
	}
	if fi, err := os.Stat(filepath.Join(dir, "node.1.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("node.1.key: %v %v", fi.Mode(), err)
	}

	expectFail(t, exitUsage, "ca.crt already exists: remove it first", "cert", "create-ca", "--certs-dir", dir)
	expectFail(t, exitUsage, "node.1.crt already exists", "cert", "create-node", "--certs-dir", dir, "--node-id=1", "--hosts=x")
	expectFail(t, exitUsage, "client.crt already exists", "cert", "create-client", "--certs-dir", dir, "--name=bob")
	expectFail(t, exitUsage, `required flag(s) "hosts" not set`, "cert", "create-node", "--certs-dir", dir, "--node-id=3")
	// Without --node-id: node.crt, for any node.
	if out := mustRun(t, "cert", "create-node", "--certs-dir", dir, "--hosts=node9"); !strings.Contains(out, "node.crt") {
		t.Errorf("create-node without --node-id printed %q", out)
	}
	if out := mustRun(t, "cert", "list", "--certs-dir", dir); !strings.Contains(out, "node.crt    node    node ") {
		t.Errorf("cert list without node.crt:\n%s", out)
	}
	if c, err := (&securityFlags{certsDir: dir}).joinCredentials(); err != nil || c == nil || c.Info().SecurityProtocol != "tls" {
		t.Errorf("joinCredentials: %v, %v", c, err)
	}
	if c, err := (&securityFlags{insecure: true}).joinCredentials(); err != nil || c != nil {
		t.Errorf("joinCredentials with --insecure: %v, %v", c, err)
	}
	expectFail(t, exitUsage, "--name must not be empty", "cert", "create-client", "--certs-dir", t.TempDir(), "--name= ")
	expectFail(t, exitError, "create-ca", "cert", "create-node", "--certs-dir", t.TempDir(), "--node-id=1", "--hosts=x")
}

func TestStartNeedsCertsDirOrInsecure(t *testing.T) {
	base := []string{"start", "--id=1", "--data-dir=" + t.TempDir(), "--peers=1=127.0.0.1:1"}
	expectFail(t, exitUsage, "give --certs-dir DIR for mutual TLS", base...)
	expectFail(t, exitUsage, "--certs-dir and --insecure exclude each other", append(base, "--certs-dir=x", "--insecure")...)
	// Node 2 has no certificate in the dir.
	dir := makeCertsDir(t, 1)
	base[1] = "--id=2"
	base[3] = "--peers=1=127.0.0.1:1,2=127.0.0.1:2"
	expectFail(t, exitUsage, "node.2.crt", append(base, "--certs-dir="+dir)...)
}

func TestInsecureStartWarns(t *testing.T) {
	var out, logs syncBuffer
	stop := background(t, &out, &logs, "start", "--id=1", "--peers=1="+deadAddr(t), "--insecure", "--http-addr=off",
		"--data-dir="+filepath.Join(t.TempDir(), "n1"), "--ranges=1", "--tick=20ms")
	eventually(t, 20*time.Second, "the insecure warning", func() bool {
		return strings.Contains(logs.String(), "RUNNING INSECURE")
	})
	if code := stop(); code != exitOK {
		t.Fatalf("start exited %d:\n%s", code, logs.String())
	}
}

// TestTLSClusterThroughCLI starts three nodes with "start --certs-dir" and
// uses them with the client commands' --certs-dir; without it, or with a
// certificate of another cluster, the CLI says why it cannot connect.
func TestTLSClusterThroughCLI(t *testing.T) {
	dir := makeCertsDir(t, 3)
	port := freePorts(t, 3)
	var peers, eps []string
	for i := range 3 {
		addr := fmt.Sprintf("127.0.0.1:%d", port+i)
		peers = append(peers, fmt.Sprintf("%d=%s", i+1, addr))
		eps = append(eps, addr)
	}
	data := t.TempDir()
	for i := range 3 {
		var out, logs syncBuffer
		background(t, &out, &logs, "start", fmt.Sprintf("--id=%d", i+1), "--peers="+strings.Join(peers, ","),
			"--certs-dir="+dir, "--http-addr=off", "--data-dir="+filepath.Join(data, fmt.Sprint(i+1)), "--ranges=4", "--tick=20ms")
	}
	endpoints := "--endpoints=" + strings.Join(eps, ",")
	eventually(t, 30*time.Second, "a put over TLS", func() bool {
		_, _, code := runCLI(t, "kv", "put", "secret", "value", endpoints, "--certs-dir="+dir, "--timeout=2s")
		return code == exitOK
	})
	for _, ep := range eps {
		if got := mustRun(t, "kv", "get", "secret", "--endpoints="+ep, "--certs-dir="+dir); got != "value\n" {
			t.Fatalf("get through %s: %q", ep, got)
		}
	}
	if out := mustRun(t, "status", endpoints, "--certs-dir="+dir); strings.Count(out, "\n") != 4 {
		t.Fatalf("status:\n%s", out)
	}

	one := "--endpoints=" + eps[0]
	expectFail(t, exitUnavailable, "does the cluster use TLS? then pass --certs-dir", "kv", "get", "secret", one)
	foreign := makeCertsDir(t, 0)
	expectFail(t, exitUnavailable, "TLS handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority",
		"kv", "get", "secret", one, "--certs-dir="+foreign)
	// The foreign dir trusting both CAs: the CLI accepts the node, the node
	// refuses the foreign client certificate.
	ca, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	foreignCA, _ := os.ReadFile(filepath.Join(foreign, "ca.crt"))
	os.WriteFile(filepath.Join(foreign, "ca.crt"), append(foreignCA, ca...), 0o644)
	// (Usually "remote error: tls: unknown certificate authority"; when the
	// server's reset overtakes its alert, a reset or a broken pipe.)
	expectFail(t, exitUnavailable, "is the client certificate in --certs-dir from this cluster's CA?",
		"kv", "get", "secret", one, "--certs-dir="+foreign)
	// A certs dir with this cluster's CA but no client certificate.
	noClient := t.TempDir()
	os.WriteFile(filepath.Join(noClient, "ca.crt"), ca, 0o644)
	expectFail(t, exitUsage, "client.crt", "kv", "get", "secret", one, "--certs-dir="+noClient)
}

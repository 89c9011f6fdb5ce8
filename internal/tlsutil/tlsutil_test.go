package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// newCluster creates a CA, node 1 (for 127.0.0.1 and localhost) and a
// client "alice" in a fresh directory.
func newCluster(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if err := CreateCA(dir, DefaultCALifetime); err != nil {
		t.Fatal(err)
	}
	if err := CreateNode(dir, 1, []string{"127.0.0.1", "localhost"}, DefaultCertLifetime); err != nil {
		t.Fatal(err)
	}
	if err := CreateClient(dir, "alice", DefaultCertLifetime); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCreatedCertificates(t *testing.T) {
	dir := newCluster(t)
	for name, mode := range map[string]os.FileMode{
		"ca.crt": 0o644, "ca.key": 0o600, "node.1.crt": 0o644, "node.1.key": 0o600, "client.crt": 0o644, "client.key": 0o600,
	} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}

	nodeTLS, err := LoadNode(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	leaf := nodeTLS.Server.Certificates[0].Leaf
	if leaf == nil {
		t.Fatal("no parsed leaf")
	}
	if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || leaf.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Errorf("node key is %T, want ECDSA P-256", leaf.PublicKey)
	}
	if nodeTLS.Identity != (Identity{Role: RoleNode, Name: "node.1"}) || nodeTLS.Identity.NodeID() != 1 {
		t.Errorf("node identity %v", nodeTLS.Identity)
	}
	if !slices.Equal(leaf.DNSNames, []string{"localhost"}) || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("node SANs %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Errorf("node cert usages %v: must serve and dial", leaf.ExtKeyUsage)
	}

	clientTLS, err := LoadClient(dir)
	if err != nil {
		t.Fatal(err)
	}
	cleaf, _ := x509.ParseCertificate(clientTLS.Certificates[0].Certificate[0])
	if id, err := IdentityOf(cleaf); err != nil || id != (Identity{Role: RoleClient, Name: "alice"}) || id.NodeID() != 0 {
		t.Errorf("client identity %v, %v", id, err)
	}
	if !slices.Equal(cleaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("client cert usages %v: must be client only", cleaf.ExtKeyUsage)
	}

	infos, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, i := range infos {
		got = append(got, i.File+" "+i.Role+" "+i.Name+" "+strings.Join(i.Hosts, ","))
	}
	want := []string{"ca.crt ca RaftrixDB CA ", "client.crt client alice ", "node.1.crt node node.1 localhost,127.0.0.1"}
	if !slices.Equal(got, want) {
		t.Errorf("List:\n%q\nwant\n%q", got, want)
	}
}

func TestCreateRefusesToReplace(t *testing.T) {
	dir := newCluster(t)
	for name, err := range map[string]error{
		"ca":     CreateCA(dir, DefaultCALifetime),
		"node":   CreateNode(dir, 1, []string{"localhost"}, DefaultCertLifetime),
		"client": CreateClient(dir, "bob", DefaultCertLifetime),
	} {
		if !errors.Is(err, ErrExists) {
			t.Errorf("create %s again: %v, want ErrExists", name, err)
		}
	}
}

func TestCreateNeedsCAAndArguments(t *testing.T) {
	empty := t.TempDir()
	if err := CreateNode(empty, 1, []string{"localhost"}, time.Hour); err == nil || !strings.Contains(err.Error(), "create-ca") {
		t.Errorf("node without CA: %v", err)
	}
	dir := newCluster(t)
	if err := CreateNode(dir, 2, []string{" ", ""}, time.Hour); err == nil || !strings.Contains(err.Error(), "at least one host") {
		t.Errorf("node without hosts: %v", err)
	}
	if err := CreateClient(dir+"/x", "", time.Hour); err == nil {
		t.Error("client without a name accepted")
	}
	if err := CreateNode(dir, 2, []string{"localhost"}, -time.Hour); err == nil {
		t.Error("negative lifetime accepted")
	}
}

func TestLoadRefusesForeignOrMisnamedCertificates(t *testing.T) {
	dir := newCluster(t)
	other := newCluster(t)

	// node.1 of another CA copied into dir.
	for _, f := range []string{"node.1.crt", "node.1.key"} {
		data, _ := os.ReadFile(filepath.Join(other, f))
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := LoadNode(dir, 1); err == nil || !strings.Contains(err.Error(), "does not verify against ca.crt") {
		t.Errorf("node cert of another CA: %v", err)
	}

	// node.2's files holding node 3's certificate.
	if err := CreateNode(dir, 3, []string{"localhost"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{".crt", ".key"} {
		if err := os.Rename(filepath.Join(dir, "node.3"+ext), filepath.Join(dir, "node.2"+ext)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := LoadNode(dir, 2); err == nil || !strings.Contains(err.Error(), `node.2.crt is for node "node.3", not node.2`) {
		t.Errorf("node 3's cert as node 2: %v", err)
	}

	// A client certificate used as a node's: it cannot serve.
	for _, ext := range []string{".crt", ".key"} {
		data, _ := os.ReadFile(filepath.Join(dir, "client"+ext))
		if err := os.WriteFile(filepath.Join(dir, "node.4"+ext), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := LoadNode(dir, 4); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("client cert as a node's: %v", err)
	}

	if _, err := LoadClient(t.TempDir()); err == nil || !strings.Contains(err.Error(), "load cluster CA") {
		t.Errorf("client without ca.crt: %v", err)
	}
}

// TestHandshakeRoles checks the raw TLS rules: a node and a client both
// pass the server's verification and get their roles; a client that
// dials a server presenting a client certificate refuses it.
func TestHandshakeRoles(t *testing.T) {
	dir := newCluster(t)
	nodeTLS, err := LoadNode(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	clientTLS, err := LoadClient(dir)
	if err != nil {
		t.Fatal(err)
	}
	handshake := func(server, client *tls.Config) (tls.ConnectionState, error, error) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		srv := tls.Server(a, server)
		errc := make(chan error, 1)
		go func() { errc <- srv.Handshake() }()
		cli := tls.Client(b, client)
		cerr := cli.Handshake()
		if cerr != nil {
			b.Close()
		}
		serr := <-errc
		return srv.ConnectionState(), serr, cerr
	}
	peer := nodeTLS.Peer.Clone()
	peer.ServerName = "localhost"
	st, serr, cerr := handshake(nodeTLS.Server, peer)
	if id, err := IdentityOfState(st); serr != nil || cerr != nil || err != nil || id.Role != RoleNode {
		t.Errorf("node to node: server %v, client %v, identity %v %v", serr, cerr, id, err)
	}
	cli := clientTLS.Clone()
	cli.ServerName = "127.0.0.1"
	st, serr, cerr = handshake(nodeTLS.Server, cli)
	if id, err := IdentityOfState(st); serr != nil || cerr != nil || err != nil || id.Role != RoleClient {
		t.Errorf("client to node: server %v, client %v, identity %v %v", serr, cerr, id, err)
	}

	// A server that presents the client certificate.
	fake := nodeTLS.Server.Clone()
	fake.Certificates = clientTLS.Certificates
	_, _, cerr = handshake(fake, peer)
	if cerr == nil {
		t.Error("a node accepted a server presenting a client certificate")
	}
	// The wrong host name.
	wrong := nodeTLS.Peer.Clone()
	wrong.ServerName = "node9"
	if _, _, cerr = handshake(nodeTLS.Server, wrong); cerr == nil || !strings.Contains(cerr.Error(), "node9") {
		t.Errorf("a node accepted a certificate not for the host it dialed: %v", cerr)
	}
}

// TestGenericNodeCertificate: node.crt serves any node that has no
// node.<ID>.crt of its own, and a node about to join (ID 0).
func TestGenericNodeCertificate(t *testing.T) {
	dir := newCluster(t)
	if err := CreateNode(dir, 0, []string{"localhost"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node.crt")); err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint64{0, 7} {
		nt, err := LoadNode(dir, id)
		if err != nil {
			t.Fatalf("LoadNode(%d): %v", id, err)
		}
		if nt.Identity != (Identity{Role: RoleNode, Name: "node"}) || nt.Identity.NodeID() != 0 {
			t.Errorf("LoadNode(%d) identity %v", id, nt.Identity)
		}
	}
	// Node 1 has its own certificate, and keeps it.
	if nt, err := LoadNode(dir, 1); err != nil || nt.Identity.Name != "node.1" {
		t.Errorf("LoadNode(1): %v, %v", nt, err)
	}
	// node.crt holding node 1's certificate is refused.
	for _, ext := range []string{".crt", ".key"} {
		data, _ := os.ReadFile(filepath.Join(dir, "node.1"+ext))
		os.WriteFile(filepath.Join(dir, "node"+ext), data, 0o600)
	}
	if _, err := LoadNode(dir, 7); err == nil || !strings.Contains(err.Error(), `node.crt is for node "node.1", not node`) {
		t.Errorf("node 1's certificate as node.crt: %v", err)
	}
	// Neither file.
	if _, err := LoadNode(newCluster(t), 5); err == nil || !strings.Contains(err.Error(), "node.5.crt") {
		t.Errorf("no certificate for node 5: %v", err)
	}
}

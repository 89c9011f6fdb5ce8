package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// Role is what a verified certificate may do.
type Role int

const (
	// RoleNone: no verified certificate, or one of neither role.
	RoleNone Role = iota
	// RoleNode may use every service, the peer plane (Raft, Internal)
	// included.
	RoleNode
	// RoleClient may use the client plane (KV, Admin) only.
	RoleClient
)

// String returns the Subject OU that marks the role.
func (r Role) String() string {
	switch r {
	case RoleNode:
		return "node"
	case RoleClient:
		return "client"
	}
	return "none"
}

// Identity is who a verified certificate speaks for.
type Identity struct {
	Role Role
	// Name is the certificate's Subject CN: node.<ID> or the client's name.
	Name string
}

func (id Identity) String() string { return fmt.Sprintf("%s %q", id.Role, id.Name) }

// NodeID returns the ID of a node identity (CN node.<ID>), or 0.
func (id Identity) NodeID() uint64 {
	if id.Role != RoleNode || len(id.Name) <= len("node.") || id.Name[:len("node.")] != "node." {
		return 0
	}
	n, err := strconv.ParseUint(id.Name[len("node."):], 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// IdentityOf reads the identity of a certificate whose chain the caller has
// verified: Subject OU "node" or "client", exactly one of them.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	node := slices.Contains(cert.Subject.OrganizationalUnit, RoleNode.String())
	client := slices.Contains(cert.Subject.OrganizationalUnit, RoleClient.String())
	switch {
	case node && !client:
		return Identity{Role: RoleNode, Name: cert.Subject.CommonName}, nil
	case client && !node:
		return Identity{Role: RoleClient, Name: cert.Subject.CommonName}, nil
	}
	return Identity{}, fmt.Errorf("certificate %q has no single role: Subject OU %q, want %q or %q",
		cert.Subject.CommonName, cert.Subject.OrganizationalUnit, RoleNode, RoleClient)
}

// IdentityOfState returns the identity of the peer of a TLS connection, from
// its verified chain. A peer that sent no certificate has none.
func IdentityOfState(cs tls.ConnectionState) (Identity, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Identity{}, ErrNoCertificate
	}
	return IdentityOf(cs.VerifiedChains[0][0])
}

// ErrNoCertificate is IdentityOfState's error for a peer that sent no
// certificate.
var ErrNoCertificate = errors.New("no client certificate")

// NodeTLS is what a node needs for mutual TLS.
type NodeTLS struct {
	// Server serves the node's gRPC port: it presents the node certificate
	// and verifies a client certificate against the cluster CA when one is
	// given. Refusing a connection without one is the gRPC layer's job, so
	// that the caller is told Unauthenticated rather than a bare handshake
	// failure.
	Server *tls.Config
	// Peer dials other nodes: it presents the node certificate and accepts
	// only a server with a node certificate from the cluster CA.
	Peer *tls.Config
	// Identity is this node's own.
	Identity Identity
}

// LoadNode loads node id's certificate from dir: node.<id>.crt if it
// exists, else node.crt, the certificate for any node (id 0 asks for that
// one: a node about to join a cluster has no ID yet). It checks, before
// anything is served, that it is a node certificate from the CA in ca.crt,
// and that node.<id>.crt is node id's.
func LoadNode(dir string, id uint64) (*NodeTLS, error) {
	pool, err := loadPool(dir)
	if err != nil {
		return nil, err
	}
	certID := id
	if id != 0 {
		if _, err := os.Stat(filepath.Join(dir, NodeCertFile(id))); errors.Is(err, os.ErrNotExist) {
			if _, err := os.Stat(filepath.Join(dir, NodeCertFile(0))); err == nil {
				certID = 0
			}
		}
	}
	cert, ident, err := loadPair(dir, NodeCertFile(certID), NodeKeyFile(certID), pool, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}
	if ident.Role != RoleNode || ident.NodeID() != certID {
		return nil, fmt.Errorf("%s is for %s, not %s (create it with 'raftrix cert create-node')",
			NodeCertFile(certID), ident, nodeCommonName(certID))
	}
	return &NodeTLS{
		Server: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.VerifyClientCertIfGiven,
			ClientCAs:    pool,
		},
		Peer: &tls.Config{
			MinVersion:       tls.VersionTLS13,
			Certificates:     []tls.Certificate{cert},
			RootCAs:          pool,
			VerifyConnection: requireNodeServer,
		},
		Identity: ident,
	}, nil
}

// LoadClient loads the client certificate client.crt of dir for talking to
// the cluster of the CA in ca.crt. The server must present a node
// certificate from that CA for the address dialed.
func LoadClient(dir string) (*tls.Config, error) {
	pool, err := loadPool(dir)
	if err != nil {
		return nil, err
	}
	cert, _, err := loadPair(dir, ClientCertFile, ClientKeyFile, pool, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{cert},
		RootCAs:          pool,
		VerifyConnection: requireNodeServer,
	}, nil
}

// requireNodeServer refuses a server whose verified certificate is not a
// node's. (A client certificate cannot verify as a server anyway: it lacks
// the serverAuth usage. This keeps the rule explicit.)
func requireNodeServer(cs tls.ConnectionState) error {
	id, err := IdentityOfState(cs)
	if err != nil {
		return fmt.Errorf("server %s: %w", cs.ServerName, err)
	}
	if id.Role != RoleNode {
		return fmt.Errorf("server %s presents %s, not a node certificate", cs.ServerName, id)
	}
	return nil
}

func loadPool(dir string) (*x509.CertPool, error) {
	certs, err := readCerts(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("load cluster CA: %w", err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// loadPair loads a certificate and key and verifies the certificate against
// pool for each of usages.
func loadPair(dir, certFile, keyFile string, pool *x509.CertPool, usages ...x509.ExtKeyUsage) (tls.Certificate, Identity, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, certFile), filepath.Join(dir, keyFile))
	if err != nil {
		return tls.Certificate{}, Identity{}, fmt.Errorf("load %s: %w", certFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, Identity{}, fmt.Errorf("%s: %w", certFile, err)
		}
	}
	for _, u := range usages {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			return tls.Certificate{}, Identity{}, fmt.Errorf("%s does not verify against %s: %w", certFile, CACertFile, err)
		}
	}
	ident, err := IdentityOf(leaf)
	if err != nil {
		return tls.Certificate{}, Identity{}, fmt.Errorf("%s: %w", certFile, err)
	}
	return cert, ident, nil
}

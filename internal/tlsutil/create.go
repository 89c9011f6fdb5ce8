package tlsutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// File names inside a certs dir.
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ClientCertFile = "client.crt"
	ClientKeyFile  = "client.key"
)

// NodeCertFile names node id's certificate, node.<id>.crt; id 0 names the
// certificate for any node, node.crt.
func NodeCertFile(id uint64) string { return nodeFileBase(id) + ".crt" }

// NodeKeyFile names node id's key; see NodeCertFile.
func NodeKeyFile(id uint64) string { return nodeFileBase(id) + ".key" }

func nodeFileBase(id uint64) string {
	if id == 0 {
		return "node"
	}
	return "node." + strconv.FormatUint(id, 10)
}

// nodeCommonName is the Subject CN of node id's certificate: node.<id>, or
// "node" for a certificate any node may use.
func nodeCommonName(id uint64) string { return nodeFileBase(id) }

// Default lifetimes of created certificates.
const (
	DefaultCALifetime   = 10 * 365 * 24 * time.Hour
	DefaultCertLifetime = 5 * 365 * 24 * time.Hour
)

// organization is the Subject O of every certificate created here.
const organization = "RaftrixDB"

// backdate lets a certificate be valid on a peer whose clock is behind.
const backdate = time.Hour

// ErrExists is returned when a file to be created already exists: a
// certificate or key is never silently replaced.
var ErrExists = errors.New("already exists")

// CreateCA creates ca.crt and ca.key in dir (made if missing).
func CreateCA(dir string, lifetime time.Duration) error {
	if err := checkAbsent(dir, CACertFile, CAKeyFile); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl, err := template(pkix.Name{Organization: []string{organization}, CommonName: "RaftrixDB CA"}, lifetime)
	if err != nil {
		return err
	}
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.MaxPathLenZero = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	return writePair(dir, CACertFile, CAKeyFile, der, key)
}

// CreateNode creates node id's certificate and key in dir, signed by the CA
// in dir; id 0 creates node.crt, which any node may use (one that joins a
// cluster learns its ID only then). hosts are the IP addresses and DNS names
// that peers and clients use to reach the node; every one goes into the
// subject alternative names.
func CreateNode(dir string, id uint64, hosts []string, lifetime time.Duration) error {
	var ips []net.IP
	var dns []string
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		switch {
		case h == "":
		case net.ParseIP(h) != nil:
			ips = append(ips, net.ParseIP(h))
		default:
			dns = append(dns, h)
		}
	}
	if len(ips)+len(dns) == 0 {
		return fmt.Errorf("a node certificate needs at least one host (IP address or DNS name)")
	}
	subject := pkix.Name{
		Organization:       []string{organization},
		OrganizationalUnit: []string{RoleNode.String()},
		CommonName:         nodeCommonName(id),
	}
	return createSigned(dir, NodeCertFile(id), NodeKeyFile(id), subject, lifetime, func(t *x509.Certificate) {
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		t.IPAddresses = ips
		t.DNSNames = dns
	})
}

// CreateClient creates client.crt and client.key in dir for the client
// name, signed by the CA in dir. It can authenticate only as a client.
func CreateClient(dir, name string, lifetime time.Duration) error {
	if strings.TrimSpace(name) == "" {
		return fmt.Errorf("a client certificate needs a name")
	}
	subject := pkix.Name{
		Organization:       []string{organization},
		OrganizationalUnit: []string{RoleClient.String()},
		CommonName:         name,
	}
	return createSigned(dir, ClientCertFile, ClientKeyFile, subject, lifetime, func(t *x509.Certificate) {
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
}

func createSigned(dir, certFile, keyFile string, subject pkix.Name, lifetime time.Duration, adjust func(*x509.Certificate)) error {
	if err := checkAbsent(dir, certFile, keyFile); err != nil {
		return err
	}
	ca, caKey, err := loadCA(dir)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl, err := template(subject, lifetime)
	if err != nil {
		return err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	adjust(tmpl)
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter // a certificate cannot outlive its CA
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return err
	}
	return writePair(dir, certFile, keyFile, der, key)
}

func template(subject pkix.Name, lifetime time.Duration) (*x509.Certificate, error) {
	if lifetime <= 0 {
		return nil, fmt.Errorf("certificate lifetime must be positive, got %v", lifetime)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(lifetime),
	}, nil
}

// loadCA reads the CA certificate and key that sign new certificates: the
// first certificate of ca.crt must be the one ca.key belongs to.
func loadCA(dir string) (*x509.Certificate, crypto.Signer, error) {
	certs, err := readCerts(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, nil, fmt.Errorf("read CA certificate (create one with 'raftrix cert create-ca'): %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("read CA key (create one with 'raftrix cert create-ca'): %w", err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, nil, fmt.Errorf("%s: no PEM block", CAKeyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", CAKeyFile, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok || !publicKeysEqual(signer.Public(), certs[0].PublicKey) {
		return nil, nil, fmt.Errorf("%s does not belong to the first certificate of %s", CAKeyFile, CACertFile)
	}
	return certs[0], signer, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// readCerts reads every certificate of a PEM file.
func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no certificate", path)
	}
	return out, nil
}

func checkAbsent(dir string, names ...string) error {
	for _, name := range names {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s %w: remove it first to replace it", p, ErrExists)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// writePair writes a certificate (0644) and its key (0600); the key first,
// so that a certificate on disk always has its key.
func writePair(dir, certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeNew(filepath.Join(dir, keyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeNew(filepath.Join(dir, certFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeNew writes a file that must not exist yet, and syncs it.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s %w", path, ErrExists)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

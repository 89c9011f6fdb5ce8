package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/raftrix/raftrixdb/internal/tlsutil"
)

// The cert commands create a cluster's certificates; see package tlsutil
// for the files and identities. The rest of this file wires --certs-dir
// into start and the client commands.

const certsDirHelp = `Files in the certs dir:
  ca.crt, ca.key          the cluster CA (keep ca.key off the nodes: it is only
                          needed to create certificates)
  node.<ID>.crt, .key     node ID: serves gRPC and dials peers (Subject OU=node)
  node.crt, node.key      the same for any node without a node.<ID> pair, e.g.
                          one that joins a cluster (it learns its ID then)
  client.crt, client.key  a client: the CLI and Go programs (Subject OU=client)
A node needs ca.crt and its node.<ID> (or node) pair; a client needs ca.crt
and the client pair. Only node certificates may use the peer plane (Raft,
Internal, joining and heartbeats); nodes and clients may use KV, Admin and
placement's lookups. Existing files are never replaced: remove them first.`

func newCertCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Create the certificates of a cluster that uses mutual TLS",
		Long: `Create a cluster CA, node certificates and client certificates (ECDSA
P-256) for "raftrix start --certs-dir" and the client commands' --certs-dir.

` + certsDirHelp,
		Example: `  raftrix cert create-ca --certs-dir certs
  raftrix cert create-node --certs-dir certs --node-id 1 --hosts 127.0.0.1,localhost,node1
  raftrix cert create-client --certs-dir certs --name alice
  raftrix cert list --certs-dir certs`,
	}
	cmd.AddCommand(newCertCreateCACmd(), newCertCreateNodeCmd(), newCertCreateClientCmd(), newCertListCmd())
	return cmd
}

// certFlags are the flags every cert command has.
type certFlags struct {
	dir      string
	lifetime time.Duration
}

func (f *certFlags) register(cmd *cobra.Command, lifetime time.Duration) {
	cmd.Flags().StringVar(&f.dir, "certs-dir", "", "directory of the cluster's certificates (created if missing)")
	if lifetime > 0 {
		cmd.Flags().DurationVar(&f.lifetime, "lifetime", lifetime, "how long the certificate is valid")
	}
	_ = cmd.MarkFlagRequired("certs-dir") // cannot fail: the flag exists
}

func (f *certFlags) created(cmd *cobra.Command, files ...string) {
	for _, name := range files {
		fmt.Fprintln(cmd.OutOrStdout(), "created", filepath.Join(f.dir, name))
	}
}

func newCertCreateCACmd() *cobra.Command {
	var f certFlags
	cmd := &cobra.Command{
		Use:   "create-ca --certs-dir DIR",
		Short: "Create the cluster CA (ca.crt, ca.key)",
		Args:  cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if err := tlsutil.CreateCA(f.dir, f.lifetime); err != nil {
				return certError(err)
			}
			f.created(cmd, tlsutil.CACertFile, tlsutil.CAKeyFile)
			return nil
		}),
	}
	f.register(cmd, tlsutil.DefaultCALifetime)
	return cmd
}

func newCertCreateNodeCmd() *cobra.Command {
	var f certFlags
	var id uint64
	var hosts []string
	cmd := &cobra.Command{
		Use:   "create-node --certs-dir DIR [--node-id N] --hosts HOST,...",
		Short: "Create node N's certificate (node.N.crt, node.N.key), or any node's (node.crt)",
		Long: `Create node N's certificate and key, signed by the CA in --certs-dir; without
--node-id, node.crt and node.key, which any node without a node.N pair uses
(a node that joins a cluster gets its ID only then). --hosts lists every IP
address and DNS name that peers and clients use to reach the node (the host
part of its --peers entry, of client --endpoints): a peer or client that
dials a name not in the certificate refuses the connection.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if err := tlsutil.CreateNode(f.dir, id, hosts, f.lifetime); err != nil {
				return certError(err)
			}
			f.created(cmd, tlsutil.NodeCertFile(id), tlsutil.NodeKeyFile(id))
			return nil
		}),
	}
	f.register(cmd, tlsutil.DefaultCertLifetime)
	cmd.Flags().Uint64Var(&id, "node-id", 0, "the node's ID (its --id); 0 or none: node.crt, for any node")
	cmd.Flags().StringSliceVar(&hosts, "hosts", nil, "IP addresses and DNS names of the node, comma-separated")
	_ = cmd.MarkFlagRequired("hosts")
	return cmd
}

func newCertCreateClientCmd() *cobra.Command {
	var f certFlags
	var name string
	cmd := &cobra.Command{
		Use:   "create-client --certs-dir DIR --name NAME",
		Short: "Create a client certificate (client.crt, client.key)",
		Long: `Create a client certificate for NAME (its Subject CN), signed by the CA in
--certs-dir. It lets the holder use KV and Admin, never the peer plane. A
certs dir holds one client certificate; give each client its own directory
(copy ca.crt and the client pair there).`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(name) == "" {
				return usagef("--name must not be empty")
			}
			if err := tlsutil.CreateClient(f.dir, name, f.lifetime); err != nil {
				return certError(err)
			}
			f.created(cmd, tlsutil.ClientCertFile, tlsutil.ClientKeyFile)
			return nil
		}),
	}
	f.register(cmd, tlsutil.DefaultCertLifetime)
	cmd.Flags().StringVar(&name, "name", "", "the client's name")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newCertListCmd() *cobra.Command {
	var f certFlags
	cmd := &cobra.Command{
		Use:   "list --certs-dir DIR",
		Short: "List the certificates of a certs dir",
		Args:  cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			infos, err := tlsutil.List(f.dir)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "FILE\tROLE\tNAME\tEXPIRES\tHOSTS")
			for _, i := range infos {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", i.File, i.Role, i.Name, i.NotAfter.UTC().Format(time.DateOnly), strings.Join(i.Hosts, ","))
			}
			return tw.Flush()
		}),
	}
	f.register(cmd, 0)
	return cmd
}

// certError makes refusing to replace a file a usage error.
func certError(err error) error {
	if errors.Is(err, tlsutil.ErrExists) {
		return usagef("%v", err)
	}
	return err
}

// securityFlags are start's --certs-dir and --insecure: exactly one must be
// given, so that running without TLS is always a decision.
type securityFlags struct {
	certsDir string
	insecure bool
}

func (f *securityFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.certsDir, "certs-dir", "", "enable mutual TLS with ca.crt and node.<ID>.crt/.key from this directory (see 'raftrix cert')")
	fs.BoolVar(&f.insecure, "insecure", false, "serve plaintext gRPC with no authentication at all (testing only)")
}

// nodeTLS loads node id's TLS configuration, or returns nil for --insecure.
func (f *securityFlags) nodeTLS(id uint64) (*tlsutil.NodeTLS, error) {
	switch {
	case f.certsDir != "" && f.insecure:
		return nil, usagef("--certs-dir and --insecure exclude each other")
	case f.insecure:
		return nil, nil
	case f.certsDir == "":
		return nil, usagef("give --certs-dir DIR for mutual TLS (see 'raftrix cert'), or --insecure for plaintext with no authentication")
	}
	t, err := tlsutil.LoadNode(f.certsDir, id)
	if err != nil {
		return nil, usagef("--certs-dir %s: %v", f.certsDir, err)
	}
	return t, nil
}

// joinCredentials returns the credentials a node that has no ID yet uses
// to join a cluster: its node.crt, or plaintext (nil) with --insecure.
func (f *securityFlags) joinCredentials() (credentials.TransportCredentials, error) {
	if f.insecure || f.certsDir == "" {
		return nil, nil
	}
	t, err := tlsutil.LoadNode(f.certsDir, 0)
	if err != nil {
		return nil, usagef("--certs-dir %s: a joining node needs node.crt: %v", f.certsDir, err)
	}
	return credentials.NewTLS(t.Peer), nil
}

// warnIfInsecure logs, loudly, that the node accepts anyone.
func (f *securityFlags) warnIfInsecure(log *slog.Logger) {
	if f.insecure {
		log.Warn("RUNNING INSECURE: --insecure serves plaintext gRPC and accepts any client and any peer; " +
			"anyone who reaches this port can read and write all data and join the Raft groups. Use --certs-dir in production.")
	}
}

// tlsConfig loads the client commands' TLS configuration (nil: plaintext).
func (f *clientFlags) tlsConfig() (*tls.Config, error) {
	if f.certsDir == "" {
		return nil, nil
	}
	c, err := tlsutil.LoadClient(f.certsDir)
	if err != nil {
		return nil, usagef("--certs-dir %s: %v", f.certsDir, err)
	}
	return c, nil
}

// credentials returns the endpoint's transport credentials: TLS with c, or
// plaintext for nil. They record why a connection failed in the endpoint,
// since gRPC reports only that it did.
func (ep *endpoint) credentials(c *tls.Config) credentials.TransportCredentials {
	if c == nil {
		return &recordingCreds{TransportCredentials: insecure.NewCredentials(), ep: ep}
	}
	return &recordingCreds{TransportCredentials: credentials.NewTLS(c), ep: ep, tls: true}
}

func (ep *endpoint) setDialErr(err error) {
	ep.mu.Lock()
	ep.dialErr = err
	ep.mu.Unlock()
}

// recordingCreds wraps a client's transport credentials and records a
// failed handshake, or a connection closed before the server said anything
// (how a TLS 1.3 server refuses a client certificate, and how a TLS server
// answers a plaintext client).
type recordingCreds struct {
	credentials.TransportCredentials
	ep  *endpoint
	tls bool
}

func (c *recordingCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		c.ep.setDialErr(fmt.Errorf("TLS handshake failed: %v", err))
		return nil, nil, err
	}
	return &firstReadConn{Conn: conn, creds: c}, info, nil
}

func (c *recordingCreds) Clone() credentials.TransportCredentials {
	return &recordingCreds{TransportCredentials: c.TransportCredentials.Clone(), ep: c.ep, tls: c.tls}
}

// firstReadConn records why a connection failed before any byte came from
// the server: the first read error (a TLS alert says most), else the first
// write error; never the connection's own close.
type firstReadConn struct {
	net.Conn
	creds  *recordingCreds
	gotAny atomic.Bool
	// recorded is 0 (nothing), 1 (a write error) or 2 (a read error).
	recorded atomic.Int32
}

func (c *firstReadConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.gotAny.Store(true)
	}
	c.record(err, 2)
	return n, err
}

func (c *firstReadConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.record(err, 1)
	return n, err
}

func (c *firstReadConn) record(err error, rank int32) {
	if err == nil || c.gotAny.Load() || errors.Is(err, net.ErrClosed) {
		return
	}
	for {
		old := c.recorded.Load()
		if old >= rank {
			return
		}
		if c.recorded.CompareAndSwap(old, rank) {
			break
		}
	}
	if c.creds.tls {
		c.creds.ep.setDialErr(fmt.Errorf("the server refused the connection: %v (is the client certificate in --certs-dir from this cluster's CA?)", err))
	} else {
		c.creds.ep.setDialErr(fmt.Errorf("the server closed the connection: %v (does the cluster use TLS? then pass --certs-dir)", err))
	}
}

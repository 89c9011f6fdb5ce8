package node_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/raftrix/raftrixdb/internal/tlsutil"
	"github.com/raftrix/raftrixdb/node"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// makeCerts creates a cluster CA with nodes 1..nodes for 127.0.0.1 and a
// client "alice".
func makeCerts(t *testing.T, nodes int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if err := tlsutil.CreateCA(dir, time.Hour); err != nil {
		t.Fatal(err)
	}
	for id := 1; id <= nodes; id++ {
		if err := tlsutil.CreateNode(dir, uint64(id), []string{"127.0.0.1", "localhost"}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := tlsutil.CreateClient(dir, "alice", time.Hour); err != nil {
		t.Fatal(err)
	}
	return dir
}

func loadNode(t *testing.T, dir string, id uint64) *tlsutil.NodeTLS {
	t.Helper()
	nt, err := tlsutil.LoadNode(dir, id)
	if err != nil {
		t.Fatal(err)
	}
	return nt
}

func loadClient(t *testing.T, dir string) *tls.Config {
	t.Helper()
	c, err := tlsutil.LoadClient(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startTLSNodes starts a 3-node cluster with mutual TLS from dir's certs.
func startTLSNodes(t *testing.T, dir string, ranges int) []*node.Node {
	t.Helper()
	nodes := startNodes(t, 3, 0, ranges, func(id uint64, cfg *node.Config) { cfg.TLS = loadNode(t, dir, id) })
	waitReady(t, nodes...) // every range elected a leader: the peers talk over TLS
	return nodes
}

// dialWith connects to addr with the given transport credentials.
func dialWith(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestTLSClusterServesClients: a 3-node TLS cluster elects leaders (node to
// node works), and a client certificate reads and writes through every
// node, most requests forwarded between nodes under their node identity.
func TestTLSClusterServesClients(t *testing.T) {
	dir := makeCerts(t, 3)
	nodes := startTLSNodes(t, dir, 8)
	creds := credentials.NewTLS(loadClient(t, dir))
	ctx := callCtx(t)
	for i := range 24 {
		n := nodes[i%3]
		kv := pb.NewKVClient(dialWith(t, n.Addr(), creds))
		key := fmt.Appendf(nil, "%c-tls-%d", 'a'+i*10%26, i)
		if _, err := kv.Put(ctx, &pb.PutRequest{Key: key, Value: []byte("v")}); err != nil {
			t.Fatalf("put through node %d: %v", n.ID(), err)
		}
		other := pb.NewKVClient(dialWith(t, nodes[(i+1)%3].Addr(), creds))
		resp, err := other.Get(ctx, &pb.GetRequest{Key: key})
		if err != nil || !resp.Found || string(resp.Kv.Value) != "v" {
			t.Fatalf("get %q through node %d: %v %v", key, nodes[(i+1)%3].ID(), resp, err)
		}
	}
	admin := pb.NewAdminClient(dialWith(t, nodes[0].Addr(), creds))
	if _, err := admin.NodeStatus(ctx, &pb.NodeStatusRequest{}); err != nil {
		t.Fatalf("a client calls Admin: %v", err)
	}
}

func TestTLSHandshakes(t *testing.T) {
	dir := makeCerts(t, 3)
	foreign := makeCerts(t, 1) // another cluster's CA, node 1 and client
	nodes := startTLSNodes(t, dir, 2)
	addr := nodes[0].Addr()
	ctx := callCtx(t)

	raftStream := func(conn *grpc.ClientConn) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		s, err := pb.NewRaftClient(conn).RaftMessages(ctx)
		if err != nil {
			return err
		}
		// An empty batch, then end of stream: a node answers by closing the
		// stream too (io.EOF); a refusal comes as the stream's status.
		_ = s.Send(&pb.RaftMessageBatch{FromNode: 2, ToNode: 1})
		_ = s.CloseSend()
		if _, err = s.Recv(); err == io.EOF {
			return nil
		}
		return err
	}
	put := func(conn *grpc.ClientConn) error {
		_, err := pb.NewKVClient(conn).Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	}
	evaluate := func(conn *grpc.ClientConn) error {
		_, err := pb.NewInternalClient(conn).Evaluate(ctx, &pb.InternalRequest{})
		return err
	}
	heartbeat := func(conn *grpc.ClientConn) error {
		_, err := pb.NewPlacementClient(conn).Heartbeat(ctx, &pb.HeartbeatRequest{})
		return err
	}
	join := func(conn *grpc.ClientConn) error {
		_, err := pb.NewPlacementClient(conn).JoinCluster(ctx, &pb.JoinClusterRequest{Addr: "127.0.0.1:1"})
		return err
	}
	listNodes := func(conn *grpc.ClientConn) error {
		_, err := pb.NewPlacementClient(conn).ListNodes(ctx, &pb.ListNodesRequest{})
		return err
	}
	noCert := loadClient(t, dir).Clone()
	noCert.Certificates = nil
	foreignNode := loadNode(t, foreign, 1)

	for _, tc := range []struct {
		name  string
		creds credentials.TransportCredentials
		call  func(*grpc.ClientConn) error
		code  codes.Code
		msg   string
	}{
		{"client cert on KV", credentials.NewTLS(loadClient(t, dir)), put, codes.OK, ""},
		{"node cert on KV", credentials.NewTLS(loadNode(t, dir, 2).Peer), put, codes.OK, ""},
		{"node cert on Raft", credentials.NewTLS(loadNode(t, dir, 2).Peer), raftStream, codes.OK, ""},
		{"client cert on Raft", credentials.NewTLS(loadClient(t, dir)), raftStream, codes.PermissionDenied, "for cluster nodes only"},
		{"client cert on Internal", credentials.NewTLS(loadClient(t, dir)), evaluate, codes.PermissionDenied, `caller is client "alice"`},
		{"client cert on Placement.Heartbeat", credentials.NewTLS(loadClient(t, dir)), heartbeat, codes.PermissionDenied, "for cluster nodes only"},
		{"client cert on Placement.JoinCluster", credentials.NewTLS(loadClient(t, dir)), join, codes.PermissionDenied, "for cluster nodes only"},
		{"client cert on Placement.ListNodes", credentials.NewTLS(loadClient(t, dir)), listNodes, codes.OK, ""},
		{"no cert on KV", credentials.NewTLS(noCert), put, codes.Unauthenticated, "presented none"},
		{"no cert on Raft", credentials.NewTLS(noCert), raftStream, codes.Unauthenticated, "presented none"},
		{"client cert of another CA", credentials.NewTLS(loadClient(t, foreign)), put, codes.Unavailable, ""},
		{"node cert of another CA on Raft", credentials.NewTLS(foreignNode.Peer), raftStream, codes.Unavailable, ""},
		{"plaintext", insecure.NewCredentials(), put, codes.Unavailable, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(dialWith(t, addr, tc.creds))
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Fatalf("got %v, want %v with %q", err, tc.code, tc.msg)
			}
		})
	}

	// A node refuses a server whose certificate is not from its cluster's
	// CA: here a rogue server with the other cluster's node certificate.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rogue := grpc.NewServer(grpc.Creds(credentials.NewTLS(foreignNode.Server)))
	pb.RegisterKVServer(rogue, pb.UnimplementedKVServer{})
	go rogue.Serve(lis)
	defer rogue.Stop()
	err = put(dialWith(t, lis.Addr().String(), credentials.NewTLS(loadNode(t, dir, 1).Peer)))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("a node dialed a server of another CA: %v", err)
	}
}

package node

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// JoinCluster registers a new node that will listen at addr with the cluster
// that the node at joinAddr belongs to, retrying until ctx ends (the cluster
// may be electing its placement leader). It returns the new node's ID and
// the cluster's node addresses, to start the node with (Config.NodeID,
// Config.Peers, Config.JoinAddr). creds nil means plaintext.
func JoinCluster(ctx context.Context, joinAddr, addr string, creds credentials.TransportCredentials) (uint64, map[uint64]string, error) {
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(joinAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	var last error
	for {
		resp, err := pb.NewPlacementClient(conn).JoinCluster(ctx, &pb.JoinClusterRequest{Addr: addr})
		if err == nil {
			peers := map[uint64]string{}
			for _, a := range resp.Nodes {
				peers[a.NodeId] = a.Addr
			}
			peers[resp.NodeId] = addr
			return resp.NodeId, peers, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return 0, nil, fmt.Errorf("join cluster through %s: %w", joinAddr, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// newClusterCmd groups the membership commands, answered by the placement
// service through any endpoint.
func newClusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Cluster membership: nodes, join, leave",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newClusterNodesCmd(), newClusterJoinCmd(), newClusterLeaveCmd())
	return cmd
}

func newClusterNodesCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List the registered nodes with their state, liveness and replica counts",
		Long: `List every node placement knows: its state (active, decommissioning while
its replicas move away, decommissioned), whether it is live, when placement
last heard from it, and how many replicas and leaders it holds.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			c, err := cf.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			var resp *pb.ListNodesResponse
			err = c.do(cmd.Context(), read, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
				resp, err = pb.NewPlacementClient(conn).ListNodes(ctx, &pb.ListNodesRequest{})
				return err
			})
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NODE\tADDR\tSTATE\tLIVE\tREPLICAS\tLEADERS\tLAST HEARTBEAT")
			for _, n := range resp.Nodes {
				last := "never"
				if n.LastHeartbeatUnixMs > 0 {
					last = time.Since(time.UnixMilli(n.LastHeartbeatUnixMs)).Truncate(100*time.Millisecond).String() + " ago"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%t\t%d\t%d\t%s\n", n.Node.NodeId, n.Node.Addr,
					strings.ToLower(n.Node.State.String()), n.Live, n.Replicas, n.Leaders, last)
			}
			return tw.Flush()
		}),
	}
	cf.register(cmd.Flags())
	return cmd
}

func newClusterJoinCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "join ADDR",
		Short: "Register a node that will listen at ADDR and print its new ID",
		Long: `Register a node before starting it: placement gives it an ID never used
before. Start it with 'raftrix start --id ID --join ENDPOINT --listen ADDR'.
('raftrix start --join' without --id registers by itself.)`,
		Args: cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := cf.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			var resp *pb.JoinClusterResponse
			err = c.do(cmd.Context(), write, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
				resp, err = pb.NewPlacementClient(conn).JoinCluster(ctx, &pb.JoinClusterRequest{Addr: args[0]})
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), resp.NodeId)
			return nil
		}),
	}
	cf.register(cmd.Flags())
	return cmd
}

func newClusterLeaveCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "leave NODE-ID",
		Short: "Decommission a node: move its replicas away, then retire it",
		Long: `Start decommissioning a node. Placement moves every replica off it; once it
holds none it is marked decommissioned and can be stopped. Follow the
progress with 'raftrix cluster nodes' (its replica count falls to 0).`,
		Args: cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil || id == 0 {
				return usagef("NODE-ID must be a positive integer, got %q", args[0])
			}
			c, err := cf.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			var resp *pb.LeaveClusterResponse
			err = c.do(cmd.Context(), write, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
				resp, err = pb.NewPlacementClient(conn).LeaveCluster(ctx, &pb.LeaveClusterRequest{NodeId: id})
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %d is %s\n", id, strings.ToLower(resp.Node.State.String()))
			return nil
		}),
	}
	cf.register(cmd.Flags())
	return cmd
}

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

func newStatusCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the status of every endpoint's node",
		Long: `Ask every endpoint for its node's status and print one table row per
endpoint. If any endpoint does not answer, its row says so and the exit code
is that of its failure (5 when it cannot be reached).`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			c, err := cf.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NODE\tADDR\tVERSION\tREPLICAS\tLEADERS\tENGINE SIZE\tUPTIME")
			var failed []string
			var firstErr error
			for _, ep := range c.eps {
				var st *pb.NodeStatusResponse
				err := c.call(cmd.Context(), ep, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
					st, err = pb.NewAdminClient(conn).NodeStatus(ctx, &pb.NodeStatusRequest{})
					return err
				})
				if err != nil {
					fmt.Fprintf(tw, "-\t%s\tunavailable\t-\t-\t-\t-\n", ep.addr)
					failed = append(failed, errorMessage(err))
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				uptime := time.Since(time.Unix(st.StartedUnix, 0)).Truncate(time.Second)
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%s\n", st.NodeId, st.Addr, st.Version,
					st.Replicas, st.Leaders, humanBytes(st.EngineSizeBytes), uptime)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if firstErr != nil {
				return &codedError{
					code: exitCode(firstErr),
					msg:  fmt.Sprintf("%d of %d endpoints did not answer: %s", len(failed), len(c.eps), strings.Join(failed, "; ")),
				}
			}
			return nil
		}),
	}
	cf.register(cmd.Flags())
	return cmd
}

func newRangesCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "ranges",
		Short: "List the ranges of the first endpoint that answers",
		Long: `List the ranges whose replicas live on the first endpoint that answers, as
that node sees them: span [START, END), replica nodes, leader, Raft term,
applied index and approximate size. <min> and <max> are the ends of the key
space; keys that are not plain printable ASCII are Go-quoted.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			var resp *pb.ListRangesResponse
			err := withClient(cmd, &cf, read, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
				resp, err = pb.NewAdminClient(conn).ListRanges(ctx, &pb.ListRangesRequest{})
				return err
			})
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RANGE\tSTART\tEND\tREPLICAS\tLEADER\tTERM\tAPPLIED\tSIZE")
			for _, ri := range resp.Ranges {
				d := ri.GetDescriptor_()
				start, end := "<min>", "<max>"
				if len(d.GetStartKey()) > 0 {
					start = printableKey(d.GetStartKey())
				}
				if len(d.GetEndKey()) > 0 {
					end = printableKey(d.GetEndKey())
				}
				leader := "none"
				if ri.LeaderNodeId != 0 {
					leader = strconv.FormatUint(ri.LeaderNodeId, 10)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", d.GetRangeId(), start, end,
					replicaNodes(d), leader, ri.Term, ri.AppliedIndex, humanBytes(ri.ApproximateSizeBytes))
			}
			return tw.Flush()
		}),
	}
	cf.register(cmd.Flags())
	return cmd
}

// replicaNodes lists the nodes of a range's replicas, learners marked.
func replicaNodes(d *pb.RangeDescriptor) string {
	var parts []string
	for _, r := range d.GetReplicas() {
		s := strconv.FormatUint(r.NodeId, 10)
		if r.Type == pb.ReplicaDescriptor_LEARNER {
			s += "(learner)"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}

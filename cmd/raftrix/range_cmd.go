package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// newRangeCmd groups commands that change ranges.
func newRangeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "range",
		Short: "Change ranges (split)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newRangeSplitCmd())
	return cmd
}

func newRangeSplitCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "split KEY",
		Short: "Split the range holding KEY at KEY",
		Long: `Split the range that holds KEY into [start, KEY) and [KEY, end). The new
right-hand range gets a new range ID and replicas on the same nodes; no data
moves. Prints both descriptors. Splitting at an existing boundary exits 2.`,
		Args: cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			c, err := cf.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			var resp *pb.SplitRangeResponse
			err = c.do(cmd.Context(), write, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
				resp, err = pb.NewAdminClient(conn).SplitRange(ctx, &pb.SplitRangeRequest{Key: []byte(args[0])})
				return err
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "left  range %d [%s, %s)\n", resp.Left.RangeId, spanStart(resp.Left.StartKey), spanEnd(resp.Left.EndKey))
			fmt.Fprintf(out, "right range %d [%s, %s)\n", resp.Right.RangeId, spanStart(resp.Right.StartKey), spanEnd(resp.Right.EndKey))
			return nil
		}),
	}
	cf.register(cmd.Flags())
	return cmd
}

// spanStart and spanEnd print a range's bounds, naming the ends of the key
// space as the ranges table does.
func spanStart(k []byte) string {
	if len(k) == 0 {
		return "<min>"
	}
	return printableKey(k)
}

func spanEnd(k []byte) string {
	if len(k) == 0 {
		return "<max>"
	}
	return printableKey(k)
}

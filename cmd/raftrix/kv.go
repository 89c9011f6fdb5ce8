package main

import (
	"bufio"
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

func newKVCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "kv",
		Short: "Read and write keys",
		Long: `Read and write keys. Any node serves any key, forwarding to the range's leader.

Reads (get, scan) are retried on the next endpoint on any Unavailable error.
Writes (put, del, txn) are retried only when the request surely was not applied:
the endpoint could not be connected to, or it refused the request with a
routing error. Any other failure of a write is reported, never retried,
since a resent write could apply twice.`,
	}
	cf.register(cmd.PersistentFlags())
	cmd.AddCommand(newPutCmd(&cf), newGetCmd(&cf), newDelCmd(&cf), newScanCmd(&cf), newTxnCmd(&cf))
	return cmd
}

func newPutCmd(cf *clientFlags) *cobra.Command {
	var (
		ifAbsent     bool
		expectModRev int64
		expectValue  string
		prevKV       bool
	)
	cmd := &cobra.Command{
		Use:   "put KEY VALUE",
		Short: "Write a key, optionally only if a condition holds",
		Long: `Write a key and print "OK mod_revision=N version=V".

With a condition (--if-absent, --expect-mod-rev, --expect-value) the write
happens only if it holds; otherwise nothing is written and the exit code is 4.`,
		Args: cobra.ExactArgs(2),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			req := &pb.PutRequest{Key: []byte(args[0]), Value: []byte(args[1]), IfAbsent: ifAbsent, PrevKv: prevKV}
			// Presence matters, not the value: --expect-mod-rev 0 means "absent"
			// and --expect-value "" means "exists and is empty".
			if cmd.Flags().Changed("expect-mod-rev") {
				req.ExpectedModRevision = &expectModRev
			}
			if cmd.Flags().Changed("expect-value") {
				req.ExpectedValue = []byte(expectValue)
			}
			var resp *pb.PutResponse
			err := withClient(cmd, cf, write, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
				resp, err = pb.NewKVClient(conn).Put(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "OK mod_revision=%d version=%d\n", resp.GetKv().GetModRevision(), resp.GetKv().GetVersion())
			if prevKV {
				printPrev(out, resp.GetPrevKv())
			}
			return nil
		}),
	}
	fs := cmd.Flags()
	fs.BoolVar(&ifAbsent, "if-absent", false, "write only if the key does not exist")
	fs.Int64Var(&expectModRev, "expect-mod-rev", 0, "write only if the key's mod revision is N (0: the key is absent)")
	fs.StringVar(&expectValue, "expect-value", "", "write only if the key exists with value V")
	fs.BoolVar(&prevKV, "prev-kv", false, "also print the previous value and revisions")
	return cmd
}

func newGetCmd(cf *clientFlags) *cobra.Command {
	var stale, asJSON bool
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Print a key's value (exit code 3 if it does not exist)",
		Args:  cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			req := &pb.GetRequest{Key: []byte(args[0]), Stale: stale}
			var resp *pb.GetResponse
			err := withClient(cmd, cf, read, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
				resp, err = pb.NewKVClient(conn).Get(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			if !resp.GetFound() {
				return &notFoundError{key: req.Key}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSONKV(out, resp.GetKv(), false)
			}
			_, err = fmt.Fprintf(out, "%s\n", resp.GetKv().GetValue())
			return err
		}),
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "allow a possibly stale read from any replica")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the key, value and revisions as JSON")
	return cmd
}

func newDelCmd(cf *clientFlags) *cobra.Command {
	var (
		expectModRev int64
		prevKV       bool
	)
	cmd := &cobra.Command{
		Use:   "del KEY",
		Short: "Delete a key",
		Long: `Delete a key and print "OK deleted=true", or "OK deleted=false" if it did
not exist (still exit code 0).`,
		Args: cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			req := &pb.DeleteRequest{Key: []byte(args[0]), PrevKv: prevKV}
			if cmd.Flags().Changed("expect-mod-rev") {
				req.ExpectedModRevision = &expectModRev
			}
			var resp *pb.DeleteResponse
			err := withClient(cmd, cf, write, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
				resp, err = pb.NewKVClient(conn).Delete(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "OK deleted=%t\n", resp.GetDeleted())
			if prevKV {
				printPrev(out, resp.GetPrevKv())
			}
			return nil
		}),
	}
	cmd.Flags().Int64Var(&expectModRev, "expect-mod-rev", 0, "delete only if the key's mod revision is N")
	cmd.Flags().BoolVar(&prevKV, "prev-kv", false, "also print the deleted value and revisions")
	return cmd
}

// printPrev prints the previous key-value of a write on its own line.
func printPrev(w io.Writer, kv *pb.KeyValue) {
	if kv == nil {
		fmt.Fprintln(w, "prev none")
		return
	}
	fmt.Fprintf(w, "prev mod_revision=%d version=%d value=%q\n", kv.ModRevision, kv.Version, kv.Value)
}

func newScanCmd(cf *clientFlags) *cobra.Command {
	var (
		limit    int64
		pageSize int64
		keysOnly bool
		stale    bool
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "scan [START [END]]",
		Short: "Print the keys in [START, END) in order",
		Long: `Print the keys in [START, END) in order, one "KEY<TAB>VALUE" per line
(just KEY with --keys-only, a JSON object per line with --json). An empty or
missing START is the beginning of the key space, a missing END its end.
The scan reads page after page, across ranges, until it is complete or
--limit keys have been printed.`,
		Args: cobra.MaximumNArgs(2),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return usagef("--limit must not be negative, got %d", limit)
			}
			if pageSize <= 0 {
				return usagef("--page-size must be positive, got %d", pageSize)
			}
			req := &pb.ScanRequest{KeysOnly: keysOnly, Stale: stale}
			if len(args) > 0 {
				req.Start = []byte(args[0])
			}
			if len(args) > 1 {
				req.End = []byte(args[1])
			}
			c, err := cf.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			out := bufio.NewWriter(cmd.OutOrStdout())
			// Keys printed before a failure are still printed.
			defer out.Flush()
			var printed int64
			for {
				req.Limit = pageSize
				if limit > 0 {
					req.Limit = min(pageSize, limit-printed)
				}
				var resp *pb.ScanResponse
				err := c.do(cmd.Context(), read, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
					resp, err = pb.NewKVClient(conn).Scan(ctx, req)
					return err
				})
				if err != nil {
					return err
				}
				for _, kv := range resp.GetKvs() {
					if err := printScanned(out, kv, keysOnly, asJSON); err != nil {
						return err
					}
					printed++
				}
				if len(resp.GetContinuation()) == 0 || (limit > 0 && printed >= limit) {
					return out.Flush()
				}
				req.Continuation = resp.GetContinuation()
			}
		}),
	}
	fs := cmd.Flags()
	fs.Int64Var(&limit, "limit", 0, "print at most N keys (0: all)")
	fs.Int64Var(&pageSize, "page-size", 1000, "keys fetched per request")
	fs.BoolVar(&keysOnly, "keys-only", false, "print keys without values")
	fs.BoolVar(&stale, "stale", false, "allow possibly stale reads from any replica")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object per key")
	return cmd
}

func printScanned(w io.Writer, kv *pb.KeyValue, keysOnly, asJSON bool) error {
	var err error
	switch {
	case asJSON:
		err = writeJSONKV(w, kv, keysOnly)
	case keysOnly:
		_, err = fmt.Fprintf(w, "%s\n", kv.Key)
	default:
		_, err = fmt.Fprintf(w, "%s\t%s\n", kv.Key, kv.Value)
	}
	return err
}

// withClient connects to the endpoints and sends one request.
func withClient(cmd *cobra.Command, cf *clientFlags, kind requestKind, fn func(context.Context, *grpc.ClientConn) error) error {
	c, err := cf.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	return c.do(cmd.Context(), kind, fn)
}

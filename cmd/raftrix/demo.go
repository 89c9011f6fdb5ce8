package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/raftrix/raftrixdb/node"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// demoFlags are the flags of "raftrix demo".
type demoFlags struct {
	nodes    int
	ranges   int
	basePort int
	dir      string
	log      logFlags
}

// demoLeaderTimeout bounds the wait for every range to elect a leader.
const demoLeaderTimeout = time.Minute

func newDemoCmd() *cobra.Command {
	var f demoFlags
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a whole cluster in this process, until Ctrl-C",
		Long: `Start --nodes nodes in this process on 127.0.0.1, ports --base-port and up,
wait until every range has a leader, print how to connect, and run until
Ctrl-C. The data lives in a temporary directory removed on exit, or in --dir,
which is kept (a later demo with the same --dir continues from it).`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error { return runDemo(cmd, &f) }),
	}
	fs := cmd.Flags()
	fs.IntVar(&f.nodes, "nodes", 3, "number of nodes")
	fs.IntVar(&f.ranges, "ranges", 64, "number of initial ranges")
	fs.IntVar(&f.basePort, "base-port", 7001, "port of node 1; node i listens on base-port+i-1")
	fs.StringVar(&f.dir, "dir", "", "data directory to keep (default: a temporary one, removed on exit)")
	f.log.register(fs, "warn")
	return cmd
}

func runDemo(cmd *cobra.Command, f *demoFlags) error {
	switch {
	case f.nodes < 1 || f.nodes > 100:
		return usagef("--nodes must be in [1, 100], got %d", f.nodes)
	case f.basePort < 1 || f.basePort+f.nodes-1 > 65535:
		return usagef("--base-port %d leaves no room for %d nodes below port 65536", f.basePort, f.nodes)
	}
	if _, err := node.InitialDescriptors(nil, f.ranges, nil); err != nil {
		return usagef("invalid --ranges: %v", err)
	}
	logger, err := f.log.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	ctx, stop := shutdownContext(cmd.Context())
	defer stop()

	dir, keep := f.dir, true
	if dir == "" {
		if dir, err = os.MkdirTemp("", "raftrix-demo-"); err != nil {
			return err
		}
		keep = false
		// Deferred first, so it runs after the nodes have stopped.
		defer os.RemoveAll(dir)
	}
	peers := map[uint64]string{}
	var addrs []string
	for i := 1; i <= f.nodes; i++ {
		addr := fmt.Sprintf("127.0.0.1:%d", f.basePort+i-1)
		peers[uint64(i)] = addr
		addrs = append(addrs, addr)
	}
	var nodes []*node.Node
	defer stopAll(&nodes)
	for i := 1; i <= f.nodes; i++ {
		n, err := node.New(node.Config{
			NodeID:        uint64(i),
			DataDir:       filepath.Join(dir, fmt.Sprintf("n%d", i)),
			ListenAddr:    peers[uint64(i)],
			HTTPListener:  demoHTTPListener(f.basePort + i - 1),
			Peers:         peers,
			InitialRanges: f.ranges,
			Logger:        logger,
			Registry:      prometheus.NewRegistry(),
		})
		if err != nil {
			return fmt.Errorf("start node %d on %s: %w (is the port free? see --base-port)", i, peers[uint64(i)], err)
		}
		nodes = append(nodes, n)
	}
	ranges, err := waitAllLed(ctx, addrs)
	if ctx.Err() != nil {
		return nil // Ctrl-C before the cluster was up: still a clean stop
	}
	if err != nil {
		return err
	}
	printDemoHelp(cmd.OutOrStdout(), dir, keep, addrs, nodeHTTPAddrs(nodes), ranges)
	<-ctx.Done()
	stop()
	fmt.Fprintln(cmd.OutOrStdout(), "Stopping the demo cluster...")
	return nil
}

// stopAll stops nodes in parallel: each stop waits for in-flight requests.
func stopAll(nodes *[]*node.Node) {
	var wg sync.WaitGroup
	for _, n := range *nodes {
		wg.Go(n.Stop)
	}
	wg.Wait()
}

// waitAllLed polls every node until each of its replicas knows a leader,
// and returns the number of ranges.
func waitAllLed(ctx context.Context, addrs []string) (int, error) {
	cf := clientFlags{endpoints: addrs, timeout: 2 * time.Second, dialTimeout: time.Second}
	c, err := cf.dial()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, demoLeaderTimeout)
	defer cancel()
	for {
		ranges, ok := allLed(ctx, c)
		if ok {
			return ranges, nil
		}
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return 0, &codedError{code: exitUnavailable, msg: fmt.Sprintf("ranges still without a leader after %v", demoLeaderTimeout)}
			}
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// allLed reports whether every replica on every node knows its leader, and
// how many distinct ranges there are.
func allLed(ctx context.Context, c *client) (int, bool) {
	ids := map[uint64]bool{}
	for _, ep := range c.eps {
		var resp *pb.ListRangesResponse
		err := c.call(ctx, ep, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
			resp, err = pb.NewAdminClient(conn).ListRanges(ctx, &pb.ListRangesRequest{})
			return err
		})
		if err != nil {
			return 0, false
		}
		for _, ri := range resp.Ranges {
			if ri.LeaderNodeId == 0 {
				return 0, false
			}
			ids[ri.GetDescriptor_().GetRangeId()] = true
		}
	}
	return len(ids), len(ids) > 0
}

func printDemoHelp(w io.Writer, dir string, keep bool, addrs, httpAddrs []string, ranges int) {
	removed := "removed on exit"
	if keep {
		removed = "kept on exit"
	}
	all := strings.Join(addrs, ",")
	fmt.Fprintf(w, "RaftrixDB demo: %d nodes, %d ranges, every range has a leader.\n", len(addrs), ranges)
	fmt.Fprintf(w, "data: %s (%s)\n", dir, removed)
	fmt.Fprintln(w, "INSECURE: the demo serves plaintext gRPC with no authentication (start --certs-dir enables mutual TLS)")
	for i, a := range addrs {
		fmt.Fprintf(w, "  node %d  %s  (metrics: http://%s/metrics)\n", i+1, a, httpAddrs[i])
	}
	fmt.Fprintf(w, `
Try, from another terminal:
  raftrix kv put hello world --endpoints %[1]s
  raftrix kv get hello --endpoints %[1]s
  raftrix kv scan --endpoints %[1]s
  raftrix status --endpoints %[1]s
  raftrix ranges --endpoints %[2]s

Press Ctrl-C to stop.
`, all, addrs[0])
}

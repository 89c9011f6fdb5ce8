package main

import (
	"fmt"
	"maps"
	"net"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/raftrix/raftrixdb/node"
)

// startFlags are the flags of "raftrix start".
type startFlags struct {
	id               uint64
	listen           string
	httpAddr         string
	security         securityFlags
	dataDir          string
	peers            string
	join             string
	ranges           int
	splitKeys        []string
	tick             time.Duration
	maxKeySize       int
	maxValueSize     int
	maxTxnOps        int
	maxTxnBytes      int
	maxRequest       int
	deadTimeout      time.Duration
	maxRangeSize     int64
	cacheBytes       int64
	recordCacheBytes int64
	splitLoad        float64
	log              logFlags
}

func newStartCmd() *cobra.Command {
	var f startFlags
	cmd := &cobra.Command{
		Use:   "start (--id N --peers 1=HOST:PORT,... | --join HOST:PORT --listen HOST:PORT) --data-dir DIR",
		Short: "Run one node until SIGINT or SIGTERM",
		Long: `Run one RaftrixDB node until SIGINT or SIGTERM, then stop it cleanly and exit 0.

--peers lists every node of the cluster, this one included. On its first
start (an empty --data-dir) each of the three lowest node IDs creates the
initial ranges, with replicas on those three nodes; --ranges and --split-keys
only matter then.

--join adds a node to a running cluster instead: it registers through the
node at --join, which gives it an ID never used before (kept in
DATA-DIR/NODE_ID for restarts), and placement then moves replicas onto it.
--listen is the address other nodes reach it at. With --id as well, the
node was registered beforehand ('raftrix cluster join') under that ID.

Exactly one of --certs-dir (mutual TLS on the client and peer planes) and
--insecure (plaintext) is required. Logs go to stderr.

Unless the GOGC environment variable says otherwise, the node runs Go's
garbage collector at GOGC=300 (the heap may grow to four times its live
size): at 100 a node spent about a tenth of its CPU collecting, and 300 gave
1.11x the puts/s and 1.13x the reads/s (BENCHMARKS.md).`,
		Example: `  raftrix start --id 1 --listen 127.0.0.1:7001 --data-dir /tmp/n1 --certs-dir certs \
    --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003
  raftrix start --join 127.0.0.1:7001 --listen 127.0.0.1:7004 --data-dir /tmp/n4 --certs-dir certs`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error { return runStart(cmd, &f) }),
	}
	defaults := node.DefaultLimits()
	fs := cmd.Flags()
	fs.Uint64Var(&f.id, "id", 0, "this node's ID; must appear in --peers")
	fs.StringVar(&f.listen, "listen", "", "gRPC listen address (default: this node's address in --peers)")
	fs.StringVar(&f.httpAddr, "http-addr", "", `HTTP address of /metrics, /healthz, /readyz and /debug/pprof/, "off" for none
(default: 127.0.0.1 and the gRPC port + 1000, e.g. 127.0.0.1:8001 for :7001)`)
	f.security.register(fs)
	fs.StringVar(&f.dataDir, "data-dir", "", "directory of the node's storage engine")
	fs.StringVar(&f.peers, "peers", "", "every node of the cluster as ID=HOST:PORT, comma-separated")
	fs.StringVar(&f.join, "join", "", "join the running cluster that the node at this address belongs to (instead of --id and --peers)")
	fs.IntVar(&f.ranges, "ranges", 64, "number of initial ranges, splitting the key space evenly")
	fs.StringSliceVar(&f.splitKeys, "split-keys", nil, "initial range boundaries instead of --ranges, e.g. a,m,t")
	fs.DurationVar(&f.tick, "tick", 100*time.Millisecond, "Raft tick; an election takes 10 ticks, a leader lease 8 (every node of a cluster must use the same)")
	fs.IntVar(&f.maxKeySize, "max-key-size", defaults.MaxKeySize, "largest key accepted, in bytes")
	fs.IntVar(&f.maxValueSize, "max-value-size", defaults.MaxValueSize, "largest value accepted, in bytes")
	fs.IntVar(&f.maxTxnOps, "max-txn-ops", defaults.MaxTxnOps, "most compares plus operations in one transaction")
	fs.IntVar(&f.maxTxnBytes, "max-txn-bytes", defaults.MaxTxnBytes, "most bytes of keys and values in one transaction")
	fs.IntVar(&f.maxRequest, "max-request-size", node.DefaultMaxRequestSize, "largest gRPC message accepted from clients and peers, in bytes (larger: ResourceExhausted)")
	fs.DurationVar(&f.deadTimeout, "dead-timeout", 5*time.Minute, "how long a node may be silent before its replicas are re-created elsewhere")
	fs.Int64Var(&f.maxRangeSize, "max-range-size", 64<<20, "split a range that grows past this many bytes")
	fs.Int64Var(&f.cacheBytes, "cache-size", node.DefaultCacheBytes, "bytes of the storage engine's block cache")
	fs.Int64Var(&f.recordCacheBytes, "record-cache-size", node.DefaultRecordCacheBytes, "bytes of recently written and read values kept in memory")
	fs.Float64Var(&f.splitLoad, "split-writes-per-second", 5000, "split a range whose leader applies more writes per second (0: never)")
	f.log.register(fs, "info")
	cmd.MarkFlagsMutuallyExclusive("ranges", "split-keys")
	cmd.MarkFlagsMutuallyExclusive("join", "peers")
	cmd.MarkFlagsOneRequired("join", "id")
	_ = cmd.MarkFlagRequired("data-dir") // cannot fail: the flag exists
	return cmd
}

// nodeConfig checks the flags and turns them into a node configuration
// (without Logger and Registry). Every error is a usage error: nothing has
// been started yet.
func (f *startFlags) nodeConfig() (node.Config, error) {
	var peers map[uint64]string
	var self string
	if f.join != "" {
		// The ID (unless registered beforehand with 'raftrix cluster join')
		// and the peers come from the cluster (runStart).
		if f.listen == "" {
			return node.Config{}, usagef("--join needs --listen: the address other nodes reach this one at")
		}
	} else {
		if f.id == 0 {
			return node.Config{}, usagef("--id must be a positive integer")
		}
		if f.peers == "" {
			return node.Config{}, usagef("--peers is required with --id")
		}
		var err error
		if peers, err = parsePeers(f.peers); err != nil {
			return node.Config{}, err
		}
		var ok bool
		if self, ok = peers[f.id]; !ok {
			return node.Config{}, usagef("--id %d is not in --peers (which has node IDs %s)", f.id, peerIDs(peers))
		}
	}
	listen := f.listen
	if listen == "" {
		listen = self
	}
	if _, _, err := net.SplitHostPort(listen); err != nil {
		return node.Config{}, usagef("invalid --listen %q: %v", listen, err)
	}
	httpAddr, err := defaultHTTPAddr(f.httpAddr, listen)
	if err != nil {
		return node.Config{}, err
	}
	if f.dataDir == "" {
		return node.Config{}, usagef("--data-dir must not be empty")
	}
	var splitKeys [][]byte
	for _, k := range f.splitKeys {
		splitKeys = append(splitKeys, []byte(k))
	}
	// The node applies the same rules at bootstrap; checking here turns a
	// bad layout into a usage error before anything is written.
	if _, err := node.InitialDescriptors(nil, f.ranges, splitKeys); err != nil {
		return node.Config{}, usagef("invalid initial ranges: %v", err)
	}
	switch {
	case f.tick <= 0:
		return node.Config{}, usagef("--tick must be positive, got %v", f.tick)
	case f.maxKeySize <= 0:
		return node.Config{}, usagef("--max-key-size must be positive, got %d", f.maxKeySize)
	case f.maxValueSize <= 0:
		return node.Config{}, usagef("--max-value-size must be positive, got %d", f.maxValueSize)
	case f.maxTxnOps <= 0:
		return node.Config{}, usagef("--max-txn-ops must be positive, got %d", f.maxTxnOps)
	case f.maxTxnBytes <= 0:
		return node.Config{}, usagef("--max-txn-bytes must be positive, got %d", f.maxTxnBytes)
	case f.maxRequest <= 0:
		return node.Config{}, usagef("--max-request-size must be positive, got %d", f.maxRequest)
	case f.deadTimeout <= 0:
		return node.Config{}, usagef("--dead-timeout must be positive, got %v", f.deadTimeout)
	case f.cacheBytes <= 0:
		return node.Config{}, usagef("--cache-size must be positive, got %d", f.cacheBytes)
	case f.recordCacheBytes <= 0:
		return node.Config{}, usagef("--record-cache-size must be positive, got %d", f.recordCacheBytes)
	case f.maxRangeSize <= 0:
		return node.Config{}, usagef("--max-range-size must be positive, got %d", f.maxRangeSize)
	case f.splitLoad < 0:
		return node.Config{}, usagef("--split-writes-per-second must not be negative, got %v", f.splitLoad)
	}
	splitLoad := f.splitLoad
	if splitLoad == 0 {
		splitLoad = -1 // the node's "never"
	}
	limits := node.DefaultLimits()
	limits.MaxKeySize = f.maxKeySize
	limits.MaxValueSize = f.maxValueSize
	limits.MaxTxnOps = f.maxTxnOps
	limits.MaxTxnBytes = f.maxTxnBytes
	limits.MaxRequestSize = f.maxRequest
	return node.Config{
		NodeID:        f.id,
		DataDir:       f.dataDir,
		ListenAddr:    listen,
		HTTPAddr:      httpAddr,
		Peers:         peers,
		InitialRanges: f.ranges,
		SplitKeys:     splitKeys,
		TickInterval:  f.tick,
		Limits:        limits,

		DeadTimeout:          f.deadTimeout,
		MaxRangeBytes:        f.maxRangeSize,
		CacheBytes:           f.cacheBytes,
		RecordCacheBytes:     f.recordCacheBytes,
		SplitWritesPerSecond: splitLoad,
	}, nil
}

// serverGCPercent is the node's GOGC unless the environment sets one.
const serverGCPercent = 300

func runStart(cmd *cobra.Command, f *startFlags) error {
	cfg, err := f.nodeConfig()
	if err != nil {
		return err
	}
	logger, err := f.log.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	if f.join != "" {
		if err := f.joinCluster(cmd.Context(), &cfg, logger); err != nil {
			return err
		}
	}
	// The node adds its "node" attribute to its own logs; ours get it here.
	log := logger.With("node", cfg.NodeID)
	cfg.Logger = logger
	cfg.Registry = prometheus.NewRegistry()
	if cfg.TLS, err = f.security.nodeTLS(cfg.NodeID); err != nil {
		return err
	}
	f.security.warnIfInsecure(log)
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(serverGCPercent)
	}
	ctx, stop := shutdownContext(cmd.Context())
	defer stop()
	log.Info("starting node", "listen", cfg.ListenAddr, "data_dir", cfg.DataDir, "peers", f.peers)
	n, err := node.New(cfg)
	if err != nil {
		return fmt.Errorf("start node %d: %w", cfg.NodeID, err)
	}
	<-ctx.Done()
	stop()
	log.Info("shutting down")
	n.Stop()
	return nil
}

// parsePeers parses "1=host:port,2=host:port".
func parsePeers(s string) (map[uint64]string, error) {
	peers := map[uint64]string{}
	byAddr := map[string]uint64{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		idStr, addr, ok := strings.Cut(item, "=")
		if !ok {
			return nil, usagef("invalid --peers entry %q: want ID=HOST:PORT", item)
		}
		id, err := strconv.ParseUint(idStr, 10, 64)
		if err != nil || id == 0 {
			return nil, usagef("invalid --peers entry %q: node ID must be a positive integer", item)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, usagef("invalid --peers entry %q: %v", item, err)
		}
		if _, dup := peers[id]; dup {
			return nil, usagef("--peers lists node %d twice", id)
		}
		if other, dup := byAddr[addr]; dup {
			return nil, usagef("--peers gives nodes %d and %d the same address %s", other, id, addr)
		}
		peers[id] = addr
		byAddr[addr] = id
	}
	if len(peers) == 0 {
		return nil, usagef("--peers must list at least this node")
	}
	return peers, nil
}

// peerIDs lists the node IDs of peers, sorted, for error messages.
func peerIDs(peers map[uint64]string) string {
	var strs []string
	for _, id := range slices.Sorted(maps.Keys(peers)) {
		strs = append(strs, strconv.FormatUint(id, 10))
	}
	return strings.Join(strs, ",")
}

package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/raftrix/raftrixdb/internal/hlc"
	"github.com/raftrix/raftrixdb/internal/tlsutil"
)

// Default sizes of a node's two caches; `raftrix start` uses them too.
const (
	DefaultCacheBytes = 256 << 20
	// DefaultRecordCacheBytes holds about 180,000 records of 16-byte keys
	// and 256-byte values (about 370 bytes each, recordSize): the bench's
	// 100,000 keys fit. 256 MiB was measured against it when the cache kept
	// only half its budget in use (two generations), on an engine holding
	// the bench suite's 200,000 keys (scripts/puts_aged.sh, alternating,
	// two rounds): node 1's hit rate went from 75% to 100% but the CPU per
	// put did not move (1.03x, within noise) (BENCHMARKS.md).
	DefaultRecordCacheBytes = 64 << 20
)

// Config configures a node. NodeID, DataDir (or FS) and ListenAddr (or
// Listener) are required; everything else has a default.
type Config struct {
	NodeID uint64
	// DataDir holds the Pebble engine.
	DataDir string
	// FS is the filesystem Pebble uses; nil means the real one. Tests pass
	// an in-memory filesystem that can simulate a crash.
	FS vfs.FS
	// ListenAddr is the gRPC address for clients and peers.
	ListenAddr string
	// Listener, if set, is used instead of listening on ListenAddr (tests
	// pick free ports this way before they know every peer's address).
	Listener net.Listener
	// Peers maps node IDs to gRPC addresses, this node included.
	Peers map[uint64]string
	// Dialer, if set, opens connections to peers. Fault-injection tests use
	// it to cut, delay or drop traffic between nodes.
	Dialer func(ctx context.Context, addr string) (net.Conn, error)
	// Knobs change the node's behaviour in tests; production leaves them
	// zero.
	Knobs TestingKnobs
	// HTTPAddr, or HTTPListener, enables the HTTP endpoint (/metrics,
	// /healthz, /readyz, /debug/pprof/; see http.go). Neither: no endpoint.
	HTTPAddr     string
	HTTPListener net.Listener
	// TLS, if set, enables mutual TLS on the client and peer planes (see
	// tls.go); both of its configs must be set (tlsutil.LoadNode). Nil:
	// plaintext, no authentication.
	TLS *tlsutil.NodeTLS

	// Bootstrap: when the engine is empty and this node is one of the three
	// lowest IDs in Peers, it creates the initial ranges with replicas on
	// those three nodes. SplitKeys, if set, are the boundaries between
	// ranges; otherwise InitialRanges ranges split the key space evenly.
	InitialRanges int
	SplitKeys     [][]byte

	// TickInterval is the Raft tick (default 100ms); an election takes
	// ElectionTicks ticks (default 10).
	TickInterval  time.Duration
	ElectionTicks int
	// Workers is the number of Raft scheduler workers (default: half the
	// CPUs Go may use, at least one). Fewer workers make bigger rounds: a
	// worker takes every range queued while it was busy, so their appends
	// share one synced write and their messages one batch per peer. On 2
	// CPUs one worker gave 1.25x the puts/s of eight at 0.84x the CPU per
	// put (BENCHMARKS.md; measured while a round still waited for its sync).
	Workers int
	// CacheBytes is the size of the engine's block cache (default
	// DefaultCacheBytes; Pebble allocates it as blocks are read).
	CacheBytes int64
	// RecordCacheBytes bounds the record cache, the values of recently
	// written and read keys kept in memory so that applying a write does not
	// read the key back from the engine (default DefaultRecordCacheBytes;
	// see replica.RecordCache).
	RecordCacheBytes int64
	// LogTruncateThreshold is the number of applied entries a replica keeps
	// before truncating its log (default 128, replica.Config's).
	LogTruncateThreshold uint64

	// JoinAddr is the address of a node of the cluster this node joined
	// through (raftrix start --join); heartbeats fall back to it while the
	// node knows no peer.
	JoinAddr string
	// HeartbeatInterval is how often the node reports to placement (default
	// 1s); placement decides at the same pace.
	HeartbeatInterval time.Duration
	// DeadTimeout is how long a node may be silent before placement
	// re-creates its replicas elsewhere (default 5m).
	DeadTimeout time.Duration
	// MaxRangeBytes splits a range past this size (default 64 MiB);
	// SplitWritesPerSecond splits a range whose leader applies more writes
	// per second (default 5000; negative: never).
	MaxRangeBytes        int64
	SplitWritesPerSecond float64
	// ManualPlacement turns placement's decisions off: ranges are split,
	// moved and rebalanced only on an operator's request. The registry,
	// liveness and the directory still work.
	ManualPlacement bool

	// TxnExpiry is how long a transaction record may go without a heartbeat
	// before others may abort it (default 5s).
	TxnExpiry time.Duration

	Limits Limits

	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Gatherer is what /metrics serves; nil means Registry, which must then
	// be a prometheus.Gatherer (a *prometheus.Registry is).
	Gatherer prometheus.Gatherer
	Clock    hlc.Clock
}

// TestingKnobs let a test take one of several repair paths away, to show
// that the other one works on its own.
type TestingKnobs struct {
	// DropRaftMessage, if set, is asked about every Raft message the node
	// is about to send (snapshots excepted); true drops it.
	DropRaftMessage func(rangeID uint64, m raftpb.Message) bool
}

// Limits bound what a request may carry. Breaches are InvalidArgument.
type Limits struct {
	MaxKeySize   int // bytes, default 4 KiB
	MaxValueSize int // bytes, default 1 MiB
	// DefaultScanLimit is used when a scan gives no limit (default 1000);
	// MaxScanLimit is the largest limit accepted (default 10000).
	DefaultScanLimit int
	MaxScanLimit     int
	// MaxTxnOps bounds the compares plus operations of a transaction
	// (default 128); MaxTxnBytes bounds the keys and values it carries
	// (default 4 MiB).
	MaxTxnOps   int
	MaxTxnBytes int
	// MaxRequestSize bounds one gRPC message the node receives, from a
	// client or a peer, and what it sends to peers (default
	// DefaultMaxRequestSize, 32 MiB). A larger message is refused with
	// ResourceExhausted before it is decoded. It must leave room for a
	// transaction of MaxTxnBytes and a snapshot chunk (New checks).
	MaxRequestSize int
	// RequestTimeout bounds a request that has no deadline (default 10s).
	RequestTimeout time.Duration
}

// DefaultLimits returns the limits used for zero fields.
func DefaultLimits() Limits {
	return Limits{
		MaxKeySize:       4 << 10,
		MaxValueSize:     1 << 20,
		DefaultScanLimit: 1000,
		MaxScanLimit:     10000,
		MaxTxnOps:        128,
		MaxTxnBytes:      4 << 20,
		RequestTimeout:   10 * time.Second,
	}
}

func (c *Config) setDefaults() error {
	if c.NodeID == 0 {
		return fmt.Errorf("node ID must be positive")
	}
	if c.DataDir == "" {
		return fmt.Errorf("data dir is required")
	}
	if c.Listener == nil && c.ListenAddr == "" {
		return fmt.Errorf("listen address is required")
	}
	if c.TickInterval == 0 {
		c.TickInterval = 100 * time.Millisecond
	}
	if c.ElectionTicks == 0 {
		c.ElectionTicks = 10
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.DeadTimeout == 0 {
		c.DeadTimeout = 5 * time.Minute
	}
	if c.MaxRangeBytes == 0 {
		c.MaxRangeBytes = 64 << 20
	}
	if c.SplitWritesPerSecond == 0 {
		c.SplitWritesPerSecond = 5000
	}
	if c.Workers == 0 {
		c.Workers = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if c.CacheBytes == 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	if c.RecordCacheBytes == 0 {
		c.RecordCacheBytes = DefaultRecordCacheBytes
	}
	if c.InitialRanges == 0 {
		c.InitialRanges = 1
	}
	d := DefaultLimits()
	l := &c.Limits
	if l.MaxKeySize == 0 {
		l.MaxKeySize = d.MaxKeySize
	}
	if l.MaxValueSize == 0 {
		l.MaxValueSize = d.MaxValueSize
	}
	if l.DefaultScanLimit == 0 {
		l.DefaultScanLimit = d.DefaultScanLimit
	}
	if l.MaxScanLimit == 0 {
		l.MaxScanLimit = d.MaxScanLimit
	}
	if l.MaxTxnOps == 0 {
		l.MaxTxnOps = d.MaxTxnOps
	}
	if l.MaxTxnBytes == 0 {
		l.MaxTxnBytes = d.MaxTxnBytes
	}
	if l.RequestTimeout == 0 {
		l.RequestTimeout = d.RequestTimeout
	}
	if c.FS == nil {
		c.FS = vfs.Default
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.Clock == nil {
		c.Clock = hlc.SystemClock{}
	}
	return nil
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Driver is the store under test, as the workloads see it. Methods are safe
// for concurrent use. Arguments are not kept after a method returns, so
// callers may reuse their buffers. Errors are the store client's own (gRPC
// statuses for both drivers); errorCode names them for the report.
type Driver interface {
	// Get reads key linearizably. found is false when the key does not
	// exist; modRev is the key's mod revision when it does.
	Get(ctx context.Context, key []byte) (found bool, modRev int64, err error)
	// Put writes key unconditionally.
	Put(ctx context.Context, key, value []byte) error
	// CompareAndPut writes key only if its mod revision is still
	// expectedModRev, 0 meaning "absent". ok is false, with no error, when
	// the compare failed.
	CompareAndPut(ctx context.Context, key, value []byte, expectedModRev int64) (ok bool, err error)
	// Scan reads up to limit keys in order, starting at start, and returns
	// how many it read.
	Scan(ctx context.Context, start []byte, limit int) (n int, err error)
	// Close releases the driver's connections.
	Close() error
}

// TxnDriver is a Driver that also runs the txn and bank workloads'
// multi-key operations, each as one transaction of the store (RaftrixDB's
// KV.Txn, an etcd Txn). Both drivers are TxnDrivers.
type TxnDriver interface {
	Driver
	// GetValue is Get that also returns the value, which the caller owns.
	GetValue(ctx context.Context, key []byte) (value []byte, modRev int64, found bool, err error)
	// CompareAndPutAll is one transaction: if every keys[i] still has mod
	// revision expect[i] (0 meaning absent), put values[i] to keys[i] for
	// every i; otherwise write nothing and read every key. With read, the
	// successful branch also reads each key just before writing it (a
	// read-compare-write of every key). A nil expect means no compares: the
	// puts always happen. Keys must be distinct.
	CompareAndPutAll(ctx context.Context, keys, values [][]byte, expect []int64, read bool) (TxnResult, error)
}

// TxnResult is how a CompareAndPutAll went.
type TxnResult struct {
	// Succeeded is true when every compare held and the puts were applied.
	Succeeded bool
	// Revision is, on success, the mod revision every put key now has.
	Revision int64
	// ModRevs are, on failure, the keys' current mod revisions (0 for an
	// absent key), in the order of the keys.
	ModRevs []int64
}

// DriverConfig says how a driver connects.
type DriverConfig struct {
	// Endpoints are HOST:PORT addresses of the store's nodes.
	Endpoints []string
	// Conns is the number of connections; connection i goes to endpoint
	// i mod len(Endpoints), and operations use the connections round-robin.
	// 0 means one per endpoint. The raftrix driver ignores it: its client
	// keeps one connection per node and picks the node by key.
	Conns int
	// DialTimeout bounds establishing a connection where the client dials
	// eagerly (etcd).
	DialTimeout time.Duration
}

func (c DriverConfig) conns() int {
	if c.Conns > 0 {
		return c.Conns
	}
	return len(c.Endpoints)
}

// Driver names.
const (
	DriverRaftrix = "raftrix"
	DriverEtcd    = "etcd"
)

// defaultEndpoints are each driver's endpoints when none are given: a local
// `raftrix demo` node and a local etcd member.
var defaultEndpoints = map[string][]string{
	DriverRaftrix: {"127.0.0.1:7001"},
	DriverEtcd:    {"127.0.0.1:2379"},
}

// OpenDriver connects the named driver.
func OpenDriver(name string, cfg DriverConfig) (Driver, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("--endpoints must list at least one HOST:PORT")
	}
	if cfg.Conns < 0 {
		return nil, fmt.Errorf("--conns must not be negative, got %d", cfg.Conns)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	switch name {
	case DriverRaftrix:
		return openRaftrix(cfg)
	case DriverEtcd:
		return openEtcd(cfg)
	}
	return nil, fmt.Errorf("unknown driver %q (want %s or %s)", name, DriverRaftrix, DriverEtcd)
}

// errorCode names err for the report: the gRPC code name (Unavailable,
// DeadlineExceeded, …) when there is one.
func errorCode(err error) string {
	if err == nil {
		return codes.OK.String()
	}
	// etcd's typed errors (rpctypes.EtcdError) carry a code without being
	// a *status.Status.
	var coded interface{ Code() codes.Code }
	if errors.As(err, &coded) {
		return coded.Code().String()
	}
	if st, ok := status.FromError(err); ok {
		return st.Code().String()
	}
	if st := status.FromContextError(err); st.Code() != codes.Unknown {
		return st.Code().String()
	}
	return codes.Unknown.String()
}

// sortedCodes returns the keys of a code count map in order.
func sortedCodes(m map[string]int64) []string {
	out := make([]string, 0, len(m))
	for c := range m {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// formatCodes renders a code count map as "Unavailable=3 DeadlineExceeded=1".
func formatCodes(m map[string]int64) string {
	var b strings.Builder
	for i, c := range sortedCodes(m) {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", c, m[c])
	}
	return b.String()
}

package placement

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Store is placement's durable state: keys in the system range, read
// linearizably and written with compare-and-set.
type Store interface {
	// Get returns a key's value and mod revision; found is false if absent.
	Get(ctx context.Context, key []byte) (value []byte, modRevision int64, found bool, err error)
	// CompareAndSet writes key if its mod revision is still expected (0:
	// absent). ok is false if it was not.
	CompareAndSet(ctx context.Context, key, value []byte, expected int64) (ok bool, err error)
	// Scan returns the keys and values with a prefix.
	Scan(ctx context.Context, prefix []byte) (keys, values [][]byte, err error)
}

// Actuator makes the changes placement decides, on the ranges' leaders.
// Each returns the descriptors the change produced, so the directory
// reflects it before the next heartbeat.
type Actuator interface {
	MoveReplica(ctx context.Context, rangeID, from, to uint64) (*pb.RangeDescriptor, error)
	TransferLeader(ctx context.Context, rangeID, to uint64) error
	SplitRange(ctx context.Context, rangeID uint64) (left, right *pb.RangeDescriptor, err error)
}

// Clock is the time source (injected for tests).
type Clock interface{ Now() time.Time }

// Config configures a Service.
type Config struct {
	Store    Store
	Actuator Actuator
	Clock    Clock
	Logger   *slog.Logger
	Decide   DecideConfig
	// DeadTimeout is how long a node may go without a heartbeat before its
	// replicas are re-created elsewhere.
	DeadTimeout time.Duration
	// LiveTimeout is how long after its last heartbeat a node counts as live
	// for placing replicas and leaders (a few heartbeat intervals).
	LiveTimeout time.Duration
	// Interval is how often the leader decides (and nodes heartbeat).
	Interval time.Duration
	// Grace is how long a new leader waits before deciding (default: one
	// full report round plus an interval, at least LiveTimeout).
	Grace time.Duration
}

// FullReportEvery is how many heartbeats apart a node reports every one of
// its ranges; in between it reports only the ranges that changed. A new
// placement leader waits that long before it decides anything.
const FullReportEvery = 10

// Key layout of placement's durable state (in the system range).
var (
	nodeKeyPrefix = []byte("\xff\xffnodes/")
	// NodeIDCounterKey holds the last node ID handed out.
	NodeIDCounterKey = []byte("\xff\xffsystem/next-node-id")
)

// NodeKey is the key of a node's record.
func NodeKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), nodeKeyPrefix...), id)
}

// Service is the placement service. Its soft state (liveness, directory) is
// meaningful only on the placement leader; Reset clears it when leadership
// is lost.
type Service struct {
	cfg Config

	mu struct {
		sync.Mutex
		dir       *Directory
		stale     *staleReplicas
		lastSeen  map[uint64]time.Time
		nodes     map[uint64]*pb.NodeRecord // cache of the durable registry
		inFlight  map[uint64]Action         // by range
		leadSince time.Time
		leading   bool
	}
}

// NewService returns a service.
func NewService(cfg Config) *Service {
	if cfg.Grace == 0 {
		cfg.Grace = max(cfg.LiveTimeout, (FullReportEvery+1)*cfg.Interval)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg}
	s.resetLocked()
	return s
}

// resetLocked drops the soft state. Actions in flight are kept: their
// goroutines still run, and deciding them again would double them.
func (s *Service) resetLocked() {
	s.mu.dir = NewDirectory()
	s.mu.stale = newStaleReplicas()
	s.mu.lastSeen = map[uint64]time.Time{}
	s.mu.nodes = nil
	if s.mu.inFlight == nil {
		s.mu.inFlight = map[uint64]Action{}
	}
}

// nodes returns a copy of the registry, loading it from the store the first
// time (and again after reload).
func (s *Service) nodes(ctx context.Context) (map[uint64]*pb.NodeRecord, error) {
	s.mu.Lock()
	cached := s.mu.nodes
	s.mu.Unlock()
	if cached == nil {
		if err := s.reload(ctx); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.mu.nodes), nil
}

// reload reads the registry from the store: the cache may be stale if
// another placement leader changed it meanwhile.
func (s *Service) reload(ctx context.Context) error {
	_, values, err := s.cfg.Store.Scan(ctx, nodeKeyPrefix)
	if err != nil {
		return err
	}
	out := map[uint64]*pb.NodeRecord{}
	for _, v := range values {
		rec := &pb.NodeRecord{}
		if err := proto.Unmarshal(v, rec); err != nil {
			return fmt.Errorf("decode node record: %w", err)
		}
		out[rec.NodeId] = rec
	}
	s.mu.Lock()
	s.mu.nodes = out
	s.mu.Unlock()
	return nil
}

// knownNode reports whether id is registered, reloading the registry once
// on a miss.
func (s *Service) knownNode(ctx context.Context, id uint64) (*pb.NodeRecord, error) {
	nodes, err := s.nodes(ctx)
	if err != nil {
		return nil, err
	}
	if rec, ok := nodes[id]; ok {
		return rec, nil
	}
	if err := s.reload(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec, ok := s.mu.nodes[id]; ok {
		return rec, nil
	}
	return nil, fmt.Errorf("%w: %d", ErrUnknownNode, id)
}

// updateNode read-modify-writes a node record by compare-and-set: mutate
// gets the stored record (nil if absent) and returns the one to store, or
// nil to leave it alone.
func (s *Service) updateNode(ctx context.Context, id uint64, mutate func(*pb.NodeRecord) *pb.NodeRecord) (*pb.NodeRecord, error) {
	for {
		v, rev, found, err := s.cfg.Store.Get(ctx, NodeKey(id))
		if err != nil {
			return nil, err
		}
		var cur *pb.NodeRecord
		if found {
			cur = &pb.NodeRecord{}
			if err := proto.Unmarshal(v, cur); err != nil {
				return nil, fmt.Errorf("decode node record: %w", err)
			}
		}
		next := mutate(cur)
		if next == nil {
			return cur, nil
		}
		data, err := proto.Marshal(next)
		if err != nil {
			return nil, err
		}
		ok, err := s.cfg.Store.CompareAndSet(ctx, NodeKey(id), data, rev)
		if err != nil {
			return nil, err
		}
		if ok {
			s.mu.Lock()
			if s.mu.nodes != nil {
				s.mu.nodes[id] = next
			}
			s.mu.Unlock()
			return next, nil
		}
	}
}

// allocateNodeID hands out a node ID never used before.
func (s *Service) allocateNodeID(ctx context.Context) (uint64, error) {
	for {
		v, rev, found, err := s.cfg.Store.Get(ctx, NodeIDCounterKey)
		if err != nil {
			return 0, err
		}
		var last uint64
		if found {
			if last, err = strconv.ParseUint(string(v), 10, 64); err != nil {
				return 0, fmt.Errorf("node ID counter: %w", err)
			}
		}
		ok, err := s.cfg.Store.CompareAndSet(ctx, NodeIDCounterKey, []byte(strconv.FormatUint(last+1, 10)), rev)
		if err != nil {
			return 0, err
		}
		if ok {
			return last + 1, nil
		}
	}
}

// ErrUnknownNode is returned for a node ID that was never registered.
var ErrUnknownNode = errors.New("unknown node")

// Join registers a node at addr and returns its new ID and every node's
// address.
func (s *Service) Join(ctx context.Context, addr string) (uint64, []*pb.NodeAddress, error) {
	nodes, err := s.nodes(ctx)
	if err != nil {
		return 0, nil, err
	}
	for _, n := range nodes {
		if n.Addr == addr && n.State != pb.NodeRecord_DECOMMISSIONED {
			return 0, nil, fmt.Errorf("address %s is already registered to node %d", addr, n.NodeId)
		}
	}
	id, err := s.allocateNodeID(ctx)
	if err != nil {
		return 0, nil, err
	}
	if _, err := s.updateNode(ctx, id, func(*pb.NodeRecord) *pb.NodeRecord { return &pb.NodeRecord{NodeId: id, Addr: addr} }); err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	s.mu.lastSeen[id] = s.cfg.Clock.Now()
	s.mu.Unlock()
	s.cfg.Logger.Info("node joined", "joined", id, "addr", addr)
	return id, s.addresses(), nil
}

// Leave starts decommissioning a node.
func (s *Service) Leave(ctx context.Context, id uint64) (*pb.NodeRecord, error) {
	if _, err := s.knownNode(ctx, id); err != nil {
		return nil, err
	}
	rec, err := s.updateNode(ctx, id, func(cur *pb.NodeRecord) *pb.NodeRecord {
		if cur == nil || cur.State != pb.NodeRecord_ACTIVE {
			return nil
		}
		next := proto.Clone(cur).(*pb.NodeRecord)
		next.State = pb.NodeRecord_DECOMMISSIONING
		return next
	})
	if err != nil {
		return nil, err
	}
	s.cfg.Logger.Info("node leaving", "leaving", id)
	return rec, nil
}

// addresses lists the known nodes' addresses.
func (s *Service) addresses() []*pb.NodeAddress {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*pb.NodeAddress
	for _, n := range s.mu.nodes {
		if n.State != pb.NodeRecord_DECOMMISSIONED {
			out = append(out, &pb.NodeAddress{NodeId: n.NodeId, Addr: n.Addr})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeId < out[j].NodeId })
	return out
}

// Heartbeat records a node's liveness and range reports.
func (s *Service) Heartbeat(ctx context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	if _, err := s.knownNode(ctx, req.NodeId); err != nil {
		return nil, err
	}
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	s.mu.lastSeen[req.NodeId] = now
	for _, r := range req.Ranges {
		if r.Descriptor_ == nil {
			continue
		}
		s.mu.dir.Update(r, now)
		s.mu.stale.report(s.mu.dir, req.NodeId, r.Descriptor_)
	}
	removed := s.mu.stale.take(req.NodeId)
	s.mu.Unlock()
	return &pb.HeartbeatResponse{Nodes: s.addresses(), Removed: removed}, nil
}

// Lookup returns the directory's entry for key.
func (s *Service) Lookup(key []byte) (*Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.mu.dir.Lookup(key)
	if e == nil {
		return nil, fmt.Errorf("no range known for key %q yet", key)
	}
	return e, nil
}

// ListNodes reports every registered node.
func (s *Service) ListNodes(ctx context.Context) ([]*pb.NodeInfo, error) {
	nodes, err := s.nodes(ctx)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	replicas, leaders := map[uint64]int64{}, map[uint64]int64{}
	for _, e := range s.mu.dir.Entries() {
		for _, r := range e.Desc.Replicas {
			replicas[r.NodeId]++
		}
		leaders[e.LeaderNodeID]++
	}
	var out []*pb.NodeInfo
	for _, n := range nodes {
		seen := s.mu.lastSeen[n.NodeId]
		info := &pb.NodeInfo{Node: n, Live: !seen.IsZero() && now.Sub(seen) < s.cfg.LiveTimeout,
			Replicas: replicas[n.NodeId], Leaders: leaders[n.NodeId]}
		if !seen.IsZero() {
			info.LastHeartbeatUnixMs = seen.UnixMilli()
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node.NodeId < out[j].Node.NodeId })
	return out, nil
}

// Directory returns a copy of the directory's entries (for tests and the
// CLI).
func (s *Service) Directory() []*Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.dir.Entries()
}

// SetLeading tells the service whether this node is the placement leader.
// Gaining leadership starts a grace period (see grace), long enough for
// every live node to send a full report and refill the directory, before
// any decision; losing it drops the soft state.
func (s *Service) SetLeading(leading bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if leading == s.mu.leading {
		return
	}
	s.mu.leading = leading
	s.resetLocked()
	if leading {
		s.mu.leadSince = s.cfg.Clock.Now()
	}
}

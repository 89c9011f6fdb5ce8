package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/btree"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"

	"github.com/raftrix/raftrixdb/internal/hlc"
	"github.com/raftrix/raftrixdb/internal/workers"
	"github.com/raftrix/raftrixdb/placement"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
	replica "github.com/raftrix/raftrixdb/range"
	"github.com/raftrix/raftrixdb/txn"
)

// Version is reported by NodeStatus.
const Version = "0.1.0"

// Node is one server process: one Pebble engine holding every local replica,
// the Raft scheduler, the transport and the gRPC server.
type Node struct {
	cfg     Config
	id      uint64
	logger  *slog.Logger
	db      *pebble.DB
	records *replica.RecordCache
	// txnRecords holds every transaction record of db (see replica.TxnRecords).
	txnRecords *replica.TxnRecords
	hlc        *hlc.HLC
	metrics    *metrics
	sched      *scheduler
	syncs      *syncWaiter // started and stopped with sched
	syncPacer  syncPacer   // spaces out the engine's fsyncs under load
	trans      *transport
	txn        *txn.Coordinator
	// remote holds what placement said of ranges with no local replica,
	// for the transactions coordinated here (remote_ranges.go).
	remote *remoteRanges
	// items runs the requests of batch calls (KV.Batch,
	// Internal.EvaluateBatch) on reused goroutines.
	items *workers.Pool

	placement *placement.Service
	bgCancel  context.CancelFunc
	bgWG      sync.WaitGroup
	grpc      *grpc.Server
	lis       net.Listener
	http      *httpEndpoint // nil without HTTPAddr/HTTPListener
	started   time.Time
	// votesFrom is when this node's replicas start granting votes
	// (vote_delay.go).
	votesFrom time.Time

	stopTicker chan struct{}
	tickerDone chan struct{}
	stopOnce   sync.Once

	// activeMu guards active: the ranges that tick (not quiesced).
	activeMu sync.Mutex
	active   map[uint64]struct{}

	peersMu sync.RWMutex
	peers   map[uint64]string // see peers.go

	// mu guards the replica registry: by ID, and ordered by start key for
	// routing.
	// createMu serializes creating replicas for incoming snapshots; it
	// also guards destroying, the descriptors of the replicas being
	// destroyed: no replica of the same range or of an overlapping span is
	// created until that is done (a new replica's state would be deleted
	// with the old one's).
	createMu   sync.Mutex
	destroying map[uint64]*pb.RangeDescriptor

	mu struct {
		sync.RWMutex
		replicas map[uint64]*replica.Replica
		byKey    *btree.BTreeG[rangeEntry]
	}
}

// rangeEntry indexes a local replica by the start key of its span.
type rangeEntry struct {
	start []byte
	r     *replica.Replica
}

func rangeEntryLess(a, b rangeEntry) bool { return bytes.Compare(a.start, b.start) < 0 }

// New opens the node's engine, loads or bootstraps its replicas and starts
// serving. Stop releases everything.
func New(cfg Config) (*Node, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := cfg.Limits.checkRequestSize(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:        cfg,
		id:         cfg.NodeID,
		logger:     cfg.Logger.With("node", cfg.NodeID),
		hlc:        hlc.New(cfg.Clock),
		started:    cfg.Clock.Now(),
		votesFrom:  cfg.Clock.Now().Add(time.Duration(cfg.ElectionTicks) * cfg.TickInterval),
		stopTicker: make(chan struct{}),
		tickerDone: make(chan struct{}),
	}
	n.active = map[uint64]struct{}{}
	n.destroying = map[uint64]*pb.RangeDescriptor{}
	n.peers = maps.Clone(cfg.Peers)
	if n.peers == nil {
		n.peers = map[uint64]string{}
	}
	n.mu.replicas = make(map[uint64]*replica.Replica)
	n.mu.byKey = btree.NewG(8, rangeEntryLess)
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	if err := registerRuntimeCollectors(cfg.Registry); err != nil {
		return nil, err
	}
	n.metrics = m
	db, err := pebble.Open(cfg.DataDir, n.engineOptions())
	if err != nil {
		return nil, fmt.Errorf("open engine in %s: %w", cfg.DataDir, err)
	}
	n.db = db
	n.records = replica.NewRecordCache(cfg.RecordCacheBytes)
	n.txnRecords = replica.NewTxnRecords(replica.DefaultMaxTxnRecords)
	if err := n.txnRecords.Load(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("load transaction records: %w", err)
	}
	n.sched = newScheduler(cfg.Workers, n.processRanges)
	n.items = workers.New(maxItemWorkers)
	if err := cfg.Registry.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "raftrix_ranges_ticking",
		Help: "Local replicas that tick (not quiesced).",
	}, func() float64 { return float64(len(n.activeRangeIDs())) })); err != nil {
		return nil, err
	}
	if err := cfg.Registry.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "raftrix_txn_records_in_memory",
		Help: "Transaction records the node's record index holds (every record of its engine); " +
			"-1 once the index has turned itself off (too many records) and records are read from the engine.",
	}, func() float64 {
		if held, on := n.txnRecords.Len(); on {
			return float64(held)
		}
		return -1
	})); err != nil {
		return nil, err
	}
	if err := n.registerStateCollectors(); err != nil {
		db.Close()
		return nil, err
	}
	n.trans = newTransport(n)
	n.remote = newRemoteRanges()
	n.placement = placement.NewService(placement.Config{
		Store:    placementStore{n},
		Actuator: placementActuator{n},
		Clock:    cfg.Clock,
		Logger:   n.logger.With("component", "placement"),
		Decide: placement.DecideConfig{
			ReplicationFactor:       3,
			SystemReplicationFactor: 5,
			SystemRangeStart:        systemPrefix,
			MaxRangeBytes:           cfg.MaxRangeBytes,
			SplitWritesPerSecond:    max(0, cfg.SplitWritesPerSecond),
			MaxActions:              4,
		},
		DeadTimeout: cfg.DeadTimeout,
		LiveTimeout: 3 * cfg.HeartbeatInterval,
		Interval:    cfg.HeartbeatInterval,
	})
	n.txn = txn.NewCoordinator(txn.Config{Sender: n, Lookup: n, Clock: n.hlc, Logger: n.logger, Expiry: cfg.TxnExpiry, Metrics: m.txn, Workers: n.items})
	if err := n.bootstrapIfEmpty(); err != nil {
		db.Close()
		return nil, err
	}
	if err := n.loadReplicas(); err != nil {
		db.Close()
		return nil, err
	}
	lis := cfg.Listener
	if lis == nil {
		if lis, err = net.Listen("tcp", cfg.ListenAddr); err != nil {
			db.Close()
			return nil, err
		}
	}
	n.lis = lis
	n.grpc = grpc.NewServer(n.grpcServerOptions()...)
	pb.RegisterKVServer(n.grpc, &kvServer{n: n})
	pb.RegisterAdminServer(n.grpc, &adminServer{n: n})
	pb.RegisterRaftServer(n.grpc, &raftServer{n: n})
	pb.RegisterInternalServer(n.grpc, &internalServer{n: n})
	pb.RegisterPlacementServer(n.grpc, &placementServer{n: n})
	n.metrics.initGRPCMethods(n.grpc.GetServiceInfo())
	if _, ok := n.peerAddr(n.id); !ok {
		n.learnPeers([]*pb.NodeAddress{{NodeId: n.id, Addr: lis.Addr().String()}})
	}

	n.syncs = newSyncWaiter(
		func(r *replica.Replica, msgs []raftpb.Message) { n.trans.sendMessages(r, r.DeliverLocal(msgs)) },
		func(d time.Duration) { n.metrics.syncSeconds.Observe(d.Seconds()) },
		n.fatal)
	n.sched.start()
	go n.runTicker()
	bgCtx, bgCancel := context.WithCancel(context.Background())
	n.bgCancel = bgCancel
	n.placementLoops(bgCtx, &n.bgWG)
	go func() {
		if err := n.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			n.logger.Error("grpc server stopped", "error", err)
		}
	}()
	n.campaignFreshRanges()
	n.sched.enqueueAll(n.rangeIDs(), flagReady)
	if err := n.startHTTP(); err != nil {
		n.Stop()
		return nil, err
	}
	n.logger.Info("node started", "addr", lis.Addr().String(), "replicas", len(n.rangeIDs()))
	return n, nil
}

// maxGRPCMessage bounds any gRPC message; Raft batches and snapshot chunks
// stay well below it.
const maxGRPCMessage = 32 << 20

// ID returns the node's ID.
func (n *Node) ID() uint64 { return n.id }

// Addr returns the address the node listens on.
func (n *Node) Addr() string { return n.lis.Addr().String() }

// Stop shuts the node down: it stops serving, lets the Raft workers finish
// their current batch, and closes the engine. Unacknowledged requests fail
// with Unavailable; nothing acknowledged is lost, since acknowledgement
// waits for a synced write on a quorum.
func (n *Node) Stop() {
	n.stopOnce.Do(func() {
		n.stopHTTP()
		n.bgCancel()
		n.bgWG.Wait()
		n.txn.Close()
		close(n.stopTicker)
		<-n.tickerDone
		for _, r := range n.allReplicas() {
			r.Close()
		}
		// Replicas are closed, so in-flight requests have already failed;
		// a graceful stop would only wait for peers' long-lived Raft streams.
		n.grpc.Stop()
		n.items.Close()
		n.trans.stop()
		n.sched.stop()
		n.syncs.stop() // before the engine closes: its batches are waiting on it
		n.metrics.engine.detach()
		if err := n.db.Close(); err != nil {
			n.logger.Error("close engine", "error", err)
		}
		n.logger.Info("node stopped")
	})
}

func (n *Node) loadReplicas() error {
	it, err := n.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{0x01},
		UpperBound: []byte{0x02},
	})
	if err != nil {
		return err
	}
	var ids []uint64
	for valid := it.First(); valid; valid = it.Next() {
		if id, ok := replica.IsDescriptorKey(it.Key()); ok {
			ids = append(ids, id)
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	for _, id := range ids {
		st, err := replica.LoadStorage(n.db, id)
		if err != nil {
			return err
		}
		if desc := st.Descriptor(); replica.ReplicaIDOnNode(desc, n.id) == 0 {
			if err := n.destroyRemovedOnStart(desc); err != nil {
				return err
			}
			continue
		}
		if err := n.addReplica(st); err != nil {
			return err
		}
	}
	return nil
}

// destroyRemovedOnStart deletes a replica whose applied descriptor no longer
// lists this node: it applied its own removal, and the node stopped before
// destroying it (destroyReplica runs after the apply that reported the
// removal). The tombstone covers every replica ID the range has allocated,
// which includes this node's old one; were the node added again, it would
// get a new ID.
func (n *Node) destroyRemovedOnStart(desc *pb.RangeDescriptor) error {
	if err := n.destroyData(desc, desc.NextReplicaId-1); err != nil {
		return err
	}
	n.logger.Info("destroyed a replica removed before the node stopped", "range", desc.RangeId)
	return nil
}

func (n *Node) addReplica(st *replica.Storage) error {
	var r *replica.Replica
	rangeID := st.Descriptor().RangeId
	r, err := replica.New(replica.Config{
		NodeID:     n.id,
		DB:         n.db,
		Records:    n.records,
		TxnRecords: n.txnRecords,
		Logger:     n.logger,
		Notify:     func() { n.sched.enqueue(rangeID, flagReady) },
		OnSplit:    n.onSplit,
		OnQuiesce:  func(q bool) { n.setActive(rangeID, !q) },
		OnRemoved: func(rangeID, replicaID uint64) {
			// Not from inside the apply that reported it.
			go func() {
				if err := n.destroyReplica(rangeID, replicaID); err != nil {
					n.logger.Error("destroy removed replica", "range", rangeID, "error", err)
				}
			}()
		},
		ElectionTicks: n.cfg.ElectionTicks,
		LeaseDuration: n.cfg.leaseDuration(),
		// The lease and the vote delay after a restart (vote_delay.go) use
		// the same clock.
		Now:                  n.cfg.Clock.Now,
		LogTruncateThreshold: n.cfg.LogTruncateThreshold,
	}, st)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.replicas[rangeID] = r
	n.mu.byKey.ReplaceOrInsert(rangeEntry{start: st.Descriptor().StartKey, r: r})
	n.setActive(rangeID, true)
	return nil
}

// removeFromRegistry forgets a local replica.
func (n *Node) removeFromRegistry(rangeID uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	r, ok := n.mu.replicas[rangeID]
	if !ok {
		return
	}
	delete(n.mu.replicas, rangeID)
	n.mu.byKey.Delete(rangeEntry{start: r.Descriptor().StartKey})
	n.setActive(rangeID, false)
}

func (n *Node) replica(rangeID uint64) *replica.Replica {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.mu.replicas[rangeID]
}

// replicaForKey returns the local replica whose span holds key, or nil.
func (n *Node) replicaForKey(key []byte) *replica.Replica {
	n.mu.RLock()
	defer n.mu.RUnlock()
	var found *replica.Replica
	n.mu.byKey.DescendLessOrEqual(rangeEntry{start: key}, func(e rangeEntry) bool {
		found = e.r
		return false
	})
	if found == nil || !replica.ContainsKey(found.Descriptor(), key) {
		return nil
	}
	return found
}

func (n *Node) rangeIDs() []uint64 {
	n.mu.RLock()
	defer n.mu.RUnlock()
	ids := make([]uint64, 0, len(n.mu.replicas))
	for id := range n.mu.replicas {
		ids = append(ids, id)
	}
	return ids
}

// allReplicas returns the local replicas ordered by start key.
func (n *Node) allReplicas() []*replica.Replica {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]*replica.Replica, 0, n.mu.byKey.Len())
	n.mu.byKey.Ascend(func(e rangeEntry) bool {
		out = append(out, e.r)
		return true
	})
	return out
}

// runTicker is the node's single Raft clock: every tick it schedules a tick
// for every range that is not quiesced.
func (n *Node) runTicker() {
	defer close(n.tickerDone)
	t := time.NewTicker(n.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			n.sched.enqueueAll(n.activeRangeIDs(), flagTick)
		case <-n.stopTicker:
			return
		}
	}
}

// requestContext applies the default timeout to a request without deadline.
// A request that has one keeps its context: a derived one would cost every
// batch item a second registration with its parent, and the handlers start
// nothing that outlives them.
func (n *Node) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, n.cfg.Limits.RequestTimeout)
}

// setActive records whether a range ticks. It is called with the replica's
// lock held (and sometimes n.mu), so it takes only activeMu.
func (n *Node) setActive(rangeID uint64, active bool) {
	n.activeMu.Lock()
	defer n.activeMu.Unlock()
	if active {
		n.active[rangeID] = struct{}{}
	} else {
		delete(n.active, rangeID)
	}
}

func (n *Node) activeRangeIDs() []uint64 {
	n.activeMu.Lock()
	defer n.activeMu.Unlock()
	ids := make([]uint64, 0, len(n.active))
	for id := range n.active {
		ids = append(ids, id)
	}
	return ids
}

// onPeerDown wakes the quiesced ranges led by a peer whose connection
// broke: their followers must notice and elect a new leader. Ranges this
// node leads stay quiesced: a leader cut off from its followers cannot
// commit or serve a linearizable read anyway, and waking every range with
// a replica on the peer would start thousands of heartbeats to a dead node.
func (n *Node) onPeerDown(nodeID uint64) {
	for _, r := range n.allReplicas() {
		if !r.Quiesced() {
			continue
		}
		if _, leader := r.Leader(); leader == nodeID {
			r.Wake()
			n.sched.enqueue(r.RangeID(), flagReady)
		}
	}
}

// campaignFreshRanges starts the first election of freshly bootstrapped
// ranges at once, on one designated replica each (spread over the voters
// by range ID), instead of letting thousands of ranges time out together
// and split their votes.
func (n *Node) campaignFreshRanges() {
	for _, r := range n.allReplicas() {
		desc := r.Descriptor()
		if len(desc.Replicas) == 0 || !r.NeverElected() {
			continue
		}
		if desc.Replicas[desc.RangeId%uint64(len(desc.Replicas))].NodeId == n.id {
			r.Campaign()
		}
	}
}

package replica

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Config configures one replica. The zero values of the tuning fields pick
// the defaults noted on each.
type Config struct {
	NodeID uint64
	DB     *pebble.DB
	Logger *slog.Logger
	// Records is the node's record cache (nil: none). Every replica of a
	// node that shares DB must share it too (see RecordCache).
	Records *RecordCache
	// TxnRecords is the node's index of transaction records (nil: none),
	// loaded before any replica applies. Every replica of a node that
	// shares DB must share it too (see TxnRecords).
	TxnRecords *TxnRecords
	// Notify is called (without locks held) whenever the replica may have a
	// new Ready, so the node's scheduler processes it.
	Notify func()
	// OnSplit is called after a split has been applied and committed, with
	// the new left descriptor and the right-hand range's descriptor; the
	// node opens the right-hand replica.
	OnSplit func(left, right *pb.RangeDescriptor)
	// OnRemoved is called after this replica applied a configuration change
	// that removed it from its range; the node destroys it.
	OnRemoved func(rangeID, replicaID uint64)
	// OnQuiesce is called (with the replica's lock held: it must not call
	// back into the replica) when the replica quiesces or wakes.
	OnQuiesce func(quiesced bool)
	// ElectionTicks is the number of ticks without a leader before an
	// election (default 10). HeartbeatTicks defaults to 1.
	ElectionTicks  int
	HeartbeatTicks int
	// LogTruncateThreshold is the number of applied log entries kept before
	// the log is truncated (default 128: truncated that often, most entries
	// are deleted before the memtable holding them is flushed; see
	// stageTruncation).
	LogTruncateThreshold uint64
	// MaxSizePerMsg bounds the entries sent in one append (default 1 MiB).
	MaxSizePerMsg uint64
	// MaxInflightMsgs bounds unacknowledged appends per follower (default 256).
	MaxInflightMsgs int
	// LeaseDuration is how long after a ReadIndex round was sent the leader
	// serves reads without another (lease.go); 0 turns leases off. It must
	// be shorter than ElectionTicks-1 ticks of every replica's clock.
	LeaseDuration time.Duration
	// Now is the clock leases are measured by (default time.Now).
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.ElectionTicks == 0 {
		c.ElectionTicks = 10
	}
	if c.HeartbeatTicks == 0 {
		c.HeartbeatTicks = 1
	}
	if c.LogTruncateThreshold == 0 {
		c.LogTruncateThreshold = 128
	}
	if c.MaxSizePerMsg == 0 {
		c.MaxSizePerMsg = 1 << 20
	}
	if c.MaxInflightMsgs == 0 {
		c.MaxInflightMsgs = 256
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Notify == nil {
		c.Notify = func() {}
	}
	if c.OnQuiesce == nil {
		c.OnQuiesce = func(bool) {}
	}
	if c.OnRemoved == nil {
		c.OnRemoved = func(rangeID, replicaID uint64) {}
	}
	if c.OnSplit == nil {
		c.OnSplit = func(left, right *pb.RangeDescriptor) {}
	}
}

// Replica is one member of one range's Raft group.
type Replica struct {
	cfg       Config
	rangeID   uint64
	replicaID uint64
	storage   *Storage
	logger    *slog.Logger
	// writes counts applied write commands, for load-based splits.
	writes atomic.Uint64
	// leaseReads counts reads served under the leader's lease.
	leaseReads atomic.Uint64

	// mu guards the RawNode and everything the Raft loop shares with request
	// goroutines. The node's scheduler guarantees that only one goroutine at a
	// time runs Ready/PersistAppend/StageApply for a replica; mu is still
	// needed because requests Propose and Step concurrently, and the node
	// delivers append responses (DeliverLocal) from another goroutine.
	mu struct {
		sync.Mutex
		rn        *raft.RawNode
		leader    uint64 // replica ID of the leader, 0 if unknown
		term      uint64
		proposals map[uint64]chan Result
		// buffered holds the proposals not yet handed to Raft (Propose).
		buffered bufferedProposals
		// readQueue holds reads waiting for the next ReadIndex request;
		// reads holds those of requests sent, by request context. One
		// request serves every read queued before it (see ReadIndex).
		readQueue []chan uint64
		reads     map[string]*readRequest
		lease     leaderLease // see lease.go
		// notices is what commit_notice.go needs to tell the commit
		// notices it drops from the empty appends that must go out.
		notices   noticeState
		applyWait []applyWaiter
		// incoming holds received snapshot data by index until Raft hands
		// the snapshot back in a Ready (or a newer one supersedes it).
		incoming map[uint64]*incomingSnapshot
		closed   bool
		// quiesced replicas do not tick; see quiesce.go.
		quiesced  bool
		idleTicks int
	}
}

type applyWaiter struct {
	index uint64
	ch    chan struct{}
}

// incomingSnapshot holds streamed snapshot data until Raft hands the snapshot
// back in a Ready.
type incomingSnapshot struct {
	index uint64
	data  *pb.SnapshotData
	kvs   []*pb.EngineKV
}

// New opens a replica on persisted storage.
func New(cfg Config, st *Storage) (*Replica, error) {
	cfg.setDefaults()
	desc := st.Descriptor()
	replicaID := ReplicaIDOnNode(desc, cfg.NodeID)
	if replicaID == 0 {
		return nil, fmt.Errorf("range %d: node %d holds no replica in descriptor", desc.RangeId, cfg.NodeID)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("range", desc.RangeId, "replica", replicaID)
	r := &Replica{cfg: cfg, rangeID: desc.RangeId, replicaID: replicaID, storage: st, logger: logger}
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                        replicaID,
		ElectionTick:              cfg.ElectionTicks,
		HeartbeatTick:             cfg.HeartbeatTicks,
		Storage:                   st,
		Applied:                   st.Applied().Index,
		MaxSizePerMsg:             cfg.MaxSizePerMsg,
		MaxInflightMsgs:           cfg.MaxInflightMsgs,
		MaxUncommittedEntriesSize: 64 << 20,
		CheckQuorum:               true,
		PreVote:                   true,
		DisableProposalForwarding: true,
		AsyncStorageWrites:        true, // see ready.go
		Logger:                    raftLogger{logger},
	})
	if err != nil {
		return nil, fmt.Errorf("range %d: %w", desc.RangeId, err)
	}
	r.mu.rn = rn
	r.mu.proposals = make(map[uint64]chan Result)
	r.mu.reads = make(map[string]*readRequest)
	r.mu.incoming = make(map[uint64]*incomingSnapshot)
	return r, nil
}

// ReplicaIDOnNode returns the replica ID the node has in desc, or 0.
func ReplicaIDOnNode(desc *pb.RangeDescriptor, nodeID uint64) uint64 {
	for _, rd := range desc.Replicas {
		if rd.NodeId == nodeID {
			return rd.ReplicaId
		}
	}
	return 0
}

// ReplicaRemoved reports whether desc shows replicaID removed from the
// range: desc has allocated the ID (it is below next_replica_id) and no
// longer lists it. Replica IDs are never reused, so a replica that any
// committed descriptor shows removed can never be a member again.
func ReplicaRemoved(desc *pb.RangeDescriptor, replicaID uint64) bool {
	return replicaID != 0 && replicaID < desc.NextReplicaId && NodeOfReplica(desc, replicaID) == 0
}

// NodeOfReplica returns the node that holds replicaID in desc, or 0.
func NodeOfReplica(desc *pb.RangeDescriptor, replicaID uint64) uint64 {
	for _, rd := range desc.Replicas {
		if rd.ReplicaId == replicaID {
			return rd.NodeId
		}
	}
	return 0
}

// RangeID returns the range this replica belongs to.
func (r *Replica) RangeID() uint64 { return r.rangeID }

// ReplicaID returns this replica's ID within its range.
func (r *Replica) ReplicaID() uint64 { return r.replicaID }

// Descriptor returns the replica's current range descriptor.
func (r *Replica) Descriptor() *pb.RangeDescriptor { return r.storage.Descriptor() }

// Initialized reports whether the replica holds its range's state: a
// replica created for an incoming snapshot is not, until it installs it.
func (r *Replica) Initialized() bool { return r.storage.Applied().Index > 0 }

// Writes returns the number of write commands this replica has applied.
func (r *Replica) Writes() uint64 { return r.writes.Load() }

// Step hands a message from another replica to Raft.
func (r *Replica) Step(m raftpb.Message) error {
	if raft.IsLocalMsgTarget(m.From) {
		// Only this node's storage may acknowledge its writes (DeliverLocal).
		return fmt.Errorf("range %d: message from a local storage thread received from a peer", r.rangeID)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.closed {
		return ErrRemoved
	}
	if wakesReplica(m) {
		r.setQuiescedLocked(false)
	}
	if m.Type == raftpb.MsgHeartbeatResp {
		r.mu.notices.sawHeartbeatResponse(m.From)
	}
	err := r.mu.rn.Step(m)
	if err == raft.ErrStepPeerNotFound || err == raft.ErrStepLocalMsg {
		// Messages from removed peers or with a local type are not ours to
		// act on; dropping them is what raft expects.
		return nil
	}
	return err
}

// ReportUnreachable tells Raft that a message to replicaID could not be sent.
func (r *Replica) ReportUnreachable(replicaID uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.mu.closed {
		r.mu.rn.ReportUnreachable(replicaID)
	}
}

// ReportSnapshot tells Raft whether a snapshot reached replicaID.
func (r *Replica) ReportSnapshot(replicaID uint64, ok bool) {
	status := raft.SnapshotFinish
	if !ok {
		status = raft.SnapshotFailure
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.mu.closed {
		r.mu.rn.ReportSnapshot(replicaID, status)
	}
}

// NeverElected reports whether the replica is still in its bootstrap state:
// no election has happened in its range yet (as far as it knows).
func (r *Replica) NeverElected() bool {
	r.mu.Lock()
	st := r.mu.rn.BasicStatus()
	r.mu.Unlock()
	return st.Term == initialTerm && st.Lead == 0 && r.storage.Applied().Index == initialIndex
}

// Campaign makes this replica start an election now (the node does this for
// the right-hand side of a split it led, instead of waiting for a timeout).
func (r *Replica) Campaign() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.mu.closed {
		r.setQuiescedLocked(false)
		_ = r.mu.rn.Campaign()
	}
}

// Leader returns the leader's replica and node IDs (0 if unknown).
func (r *Replica) Leader() (replicaID, nodeID uint64) {
	r.mu.Lock()
	leader := r.mu.leader
	r.mu.Unlock()
	if leader == 0 {
		return 0, 0
	}
	return leader, NodeOfReplica(r.Descriptor(), leader)
}

// IsLeader reports whether this replica leads its range.
func (r *Replica) IsLeader() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.leader == r.replicaID
}

func (r *Replica) notLeaderLocked() error {
	return &NotLeaderError{
		RangeID:         r.rangeID,
		LeaderReplicaID: r.mu.leader,
		LeaderNodeID:    NodeOfReplica(r.storage.Descriptor(), r.mu.leader),
	}
}

// Status is a snapshot of the replica's Raft state for reporting.
type Status struct {
	Descriptor   *pb.RangeDescriptor
	ReplicaID    uint64
	LeaderNodeID uint64
	Term         uint64
	Commit       uint64
	Applied      uint64
	RaftState    string
	FirstIndex   uint64
	LastIndex    uint64
	RaftConfig   string
}

// Status reports the replica's current Raft state.
func (r *Replica) Status() Status {
	r.mu.Lock()
	full := r.mu.rn.Status()
	st := full.BasicStatus
	r.mu.Unlock()
	desc := r.storage.Descriptor()
	first, last := r.storage.Bounds()
	return Status{
		Descriptor:   desc,
		ReplicaID:    r.replicaID,
		LeaderNodeID: NodeOfReplica(desc, st.Lead),
		Term:         st.Term,
		Commit:       st.Commit,
		Applied:      r.storage.Applied().Index,
		RaftState:    st.RaftState.String(),
		FirstIndex:   first,
		LastIndex:    last,
		RaftConfig:   full.Config.String(),
	}
}

// Close fails every waiter and stops the replica from accepting work.
func (r *Replica) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.closed = true
	for id, ch := range r.mu.proposals {
		// The entry may still commit on the other replicas.
		ch <- Result{Err: ErrAmbiguousResult}
		delete(r.mu.proposals, id)
	}
	r.failReadsLocked()
	for _, w := range r.mu.applyWait {
		close(w.ch)
	}
	r.mu.applyWait = nil
}

// waitApplied blocks until the applied index reaches index.
func (r *Replica) waitApplied(ctx context.Context, index uint64) error {
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return ErrRemoved
	}
	if r.storage.Applied().Index >= index {
		r.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	r.mu.applyWait = append(r.mu.applyWait, applyWaiter{index: index, ch: ch})
	r.mu.Unlock()
	select {
	case <-ch:
		if r.storage.Applied().Index < index {
			return ErrRemoved
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// notifyAppliedLocked wakes the waiters whose index has been applied.
func (r *Replica) notifyAppliedLocked(applied uint64) {
	kept := r.mu.applyWait[:0]
	for _, w := range r.mu.applyWait {
		if w.index <= applied {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	r.mu.applyWait = kept
}

package node

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
	"github.com/raftrix/raftrixdb/txn"
)

// metrics are the node's Prometheus collectors, registered on the injected
// registry (never the global one). Collectors that read node state on
// scrape (replica gauges, the engine) are in metrics_replicas.go and
// metrics_engine.go; gRPC latencies in interceptors.go.
type metrics struct {
	syncSeconds      prometheus.Histogram
	readyBatchRanges prometheus.Histogram
	appliedEntries   prometheus.Counter
	raftMsgsSent     *prometheus.CounterVec // by Raft message type
	// raftMsgsSentByType holds raftMsgsSent's counter of each message type,
	// so that counting a message looks up no label.
	raftMsgsSentByType map[raftpb.MessageType]prometheus.Counter
	raftMsgsDropped    prometheus.Counter
	snapshotsSent      prometheus.Counter
	snapshotsRecv      prometheus.Counter
	splits             prometheus.Counter
	replicaMoves       prometheus.Counter

	// Requests, by full gRPC method and status code.
	grpcSeconds *prometheus.HistogramVec
	// Raft proposals of this node's leaders, their commit latency and the
	// time to apply one range's committed entries (metrics_raft.go).
	proposals     prometheus.Counter
	commitSeconds prometheus.Histogram
	applySeconds  prometheus.Histogram
	inFlight      proposalTracker
	// Snapshots: key and value bytes and the time to stream one.
	snapshotBytesSent   prometheus.Counter
	snapshotBytesRecv   prometheus.Counter
	snapshotSendSeconds prometheus.Histogram
	snapshotRecvSeconds prometheus.Histogram
	// txn is handed to the transaction coordinator.
	txn *txn.Metrics
	// engine reads the engine's metrics on scrape (metrics_engine.go).
	engine *engineCollector
}

// latencyBuckets span 100µs to about 13s.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 18)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		syncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "raftrix_engine_raft_sync_seconds",
			Help:    "Time from committing a group-commit batch of Raft state to its being durable (synced in the background; includes waiting for earlier batches).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		readyBatchRanges: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "raftrix_raft_ready_batch_ranges",
			Help:    "Number of ranges whose Ready shared one synced write.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		appliedEntries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftrix_raft_applied_entries_total",
			Help: "Raft log entries applied to the state machine.",
		}),
		raftMsgsSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "raftrix_raft_messages_sent_total",
			Help: "Raft messages handed to the transport, by type (MsgApp, MsgAppResp, MsgHeartbeat, ...).",
		}, []string{"type"}),
		raftMsgsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftrix_raft_messages_dropped_total",
			Help: "Raft messages dropped because a peer's queue was full or unreachable.",
		}),
		snapshotsSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftrix_snapshots_sent_total",
			Help: "Range snapshots streamed to followers.",
		}),
		snapshotsRecv: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftrix_snapshots_received_total",
			Help: "Range snapshots received and handed to Raft.",
		}),
		replicaMoves: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftrix_replica_moves_total",
			Help: "Replica moves completed by leaders on this node.",
		}),
		splits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftrix_range_splits_total",
			Help: "Splits applied by replicas on this node (each replica counts its own).",
		}),
		grpcSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "raftrix_grpc_request_duration_seconds",
			Help:    "Time to serve a gRPC call (a stream: its whole life), by full method name and status code.",
			Buckets: latencyBuckets,
		}, []string{"method", "code"}),
		proposals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftrix_raft_proposals_total",
			Help: "Commands and configuration changes proposed by the leaders on this node (entries they appended to their log).",
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "raftrix_raft_commit_latency_seconds",
			Help:    "Time from a leader appending its proposal to applying it, on the proposing node: sync, replication to a quorum, commit and apply.",
			Buckets: latencyBuckets,
		}),
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "raftrix_raft_apply_batch_seconds",
			Help:    "Time from the start of a scheduler round's apply (one engine batch for all its ranges) to the end of one range's apply.",
			Buckets: latencyBuckets,
		}),
		snapshotBytesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftrix_snapshot_sent_bytes_total",
			Help: "Key and value bytes of the range snapshots streamed to other nodes, counted when a snapshot is complete.",
		}),
		snapshotBytesRecv: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftrix_snapshot_received_bytes_total",
			Help: "Key and value bytes of the range snapshots received and handed to Raft.",
		}),
		snapshotSendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "raftrix_snapshot_send_duration_seconds",
			Help:    "Time to stream one range snapshot to another node, until it acknowledged it.",
			Buckets: latencyBuckets,
		}),
		snapshotRecvSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "raftrix_snapshot_receive_duration_seconds",
			Help:    "Time from a snapshot's first chunk to handing the whole snapshot to Raft.",
			Buckets: latencyBuckets,
		}),
	}
	m.raftMsgsSentByType = make(map[raftpb.MessageType]prometheus.Counter, len(raftpb.MessageType_name))
	for v := range raftpb.MessageType_name {
		if t := raftpb.MessageType(v); !raft.IsLocalMsg(t) {
			m.raftMsgsSentByType[t] = m.raftMsgsSent.WithLabelValues(t.String())
		}
	}
	for _, c := range []prometheus.Collector{m.syncSeconds, m.readyBatchRanges, m.appliedEntries,
		m.raftMsgsSent, m.raftMsgsDropped, m.snapshotsSent, m.snapshotsRecv, m.splits, m.replicaMoves,
		m.grpcSeconds, m.proposals, m.commitSeconds, m.applySeconds,
		m.snapshotBytesSent, m.snapshotBytesRecv, m.snapshotSendSeconds, m.snapshotRecvSeconds} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	var err error
	if m.txn, err = txn.NewMetrics(reg); err != nil {
		return nil, err
	}
	return m, nil
}

// snapshotSent records a snapshot streamed in full since start.
func (m *metrics) snapshotSent(start time.Time, bytes int) {
	m.snapshotBytesSent.Add(float64(bytes))
	m.snapshotSendSeconds.Observe(time.Since(start).Seconds())
}

// snapshotReceived records a snapshot whose first chunk arrived at start and
// that Raft has just been handed.
func (m *metrics) snapshotReceived(start time.Time, kvs []*pb.EngineKV) {
	bytes := 0
	for _, kv := range kvs {
		bytes += len(kv.Key) + len(kv.Value)
	}
	m.snapshotBytesRecv.Add(float64(bytes))
	m.snapshotRecvSeconds.Observe(time.Since(start).Seconds())
}

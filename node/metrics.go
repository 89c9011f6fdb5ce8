package node

import "github.com/prometheus/client_golang/prometheus"

// metrics are the node's Prometheus collectors, registered on the injected
// registry (never the global one).
type metrics struct {
	syncSeconds      prometheus.Histogram
	readyBatchRanges prometheus.Histogram
	appliedEntries   prometheus.Counter
	raftMsgsSent     prometheus.Counter
	raftMsgsDropped  prometheus.Counter
	snapshotsSent    prometheus.Counter
	snapshotsRecv    prometheus.Counter
	splits           prometheus.Counter
	replicaMoves     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		syncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "raftrix_engine_raft_sync_seconds",
			Help:    "Time to commit and sync one group-commit batch of Raft state.",
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
		raftMsgsSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "raftrix_raft_messages_sent_total",
			Help: "Raft messages handed to the transport.",
		}),
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
	}
	for _, c := range []prometheus.Collector{m.syncSeconds, m.readyBatchRanges, m.appliedEntries,
		m.raftMsgsSent, m.raftMsgsDropped, m.snapshotsSent, m.snapshotsRecv, m.splits, m.replicaMoves} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

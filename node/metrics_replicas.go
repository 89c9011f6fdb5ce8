package node

import (
	"github.com/prometheus/client_golang/prometheus"

	replica "github.com/raftrix/raftrixdb/range"
)

// registerStateCollectors registers the collectors that read the node's
// state when scraped: gauges over the replica registry (besides
// raftrix_ranges_ticking), the record cache and the engine's metrics. The engine must be
// open; Stop detaches it before closing it (metrics_engine.go).
func (n *Node) registerStateCollectors() error {
	n.metrics.engine = &engineCollector{db: n.db}
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raftrix_replicas",
			Help: "Local replicas.",
		}, func() float64 { return float64(len(n.allReplicas())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raftrix_replicas_leaders",
			Help: "Local replicas that lead their range.",
		}, func() float64 { return n.countReplicas((*replica.Replica).IsLeader) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raftrix_replicas_quiesced",
			Help: "Local replicas that are quiesced (do not tick).",
		}, func() float64 { return n.countReplicas((*replica.Replica).Quiesced) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raftrix_ranges",
			Help: "Ranges counted by this node: those it leads, and leaderless ones whose first replica is here. Summed over the nodes, the number of ranges.",
		}, func() float64 { return n.countReplicas(n.countsRange) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "raftrix_lease_reads_total",
			Help: "Linearizable reads served by the local leaders under their lease, without a ReadIndex round (summed over the current replicas: a removed replica's reads drop out).",
		}, func() float64 {
			total := 0.0
			for _, r := range n.allReplicas() {
				total += float64(r.LeaseReads())
			}
			return total
		}),
		// The record cache (range/record_cache.go): a miss on a write
		// costs a Pebble point read in the apply loop.
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "raftrix_record_cache_hits_total",
			Help: "Lookups of a user key's record (apply and linearizable reads) that the record cache answered.",
		}, func() float64 { return float64(n.records.Stats().Hits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "raftrix_record_cache_misses_total",
			Help: "Lookups of a user key's record that the record cache could not answer (read from the engine instead).",
		}, func() float64 { return float64(n.records.Stats().Misses) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "raftrix_record_cache_bytes",
			Help: "Approximate bytes of the records the record cache holds (bounded by --record-cache-size).",
		}, func() float64 { return float64(n.records.Stats().Bytes) }),
		n.metrics.engine,
	}
	for _, c := range cs {
		if err := n.cfg.Registry.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// countsRange says whether this node counts r's range in raftrix_ranges:
// exactly one node does while the replicas agree on the leader.
func (n *Node) countsRange(r *replica.Replica) bool {
	if r.IsLeader() {
		return true
	}
	if _, leader := r.Leader(); leader != 0 {
		return false
	}
	d := r.Descriptor()
	return len(d.Replicas) > 0 && d.Replicas[0].NodeId == n.id
}

// countReplicas counts the local replicas for which pred holds.
func (n *Node) countReplicas(pred func(*replica.Replica) bool) float64 {
	count := 0
	for _, r := range n.allReplicas() {
		if pred(r) {
			count++
		}
	}
	return float64(count)
}

package node

import (
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// engineCollector exports the Pebble engine's own metrics, read from
// db.Metrics() on each scrape (no polling goroutine).
type engineCollector struct {
	// mu guards db, which detach clears before the engine closes: a scrape
	// must not read a closed engine.
	mu sync.Mutex
	db *pebble.DB
}

var _ prometheus.Collector = (*engineCollector)(nil)

var (
	engineCompactionsDesc = prometheus.NewDesc("raftrix_engine_compactions_total",
		"Compactions the engine has run since it was opened.", nil, nil)
	engineFlushesDesc = prometheus.NewDesc("raftrix_engine_flushes_total",
		"Memtable flushes since the engine was opened.", nil, nil)
	engineCompactionDebtDesc = prometheus.NewDesc("raftrix_engine_compaction_debt_bytes",
		"Estimated bytes to compact for the LSM to reach a stable state.", nil, nil)
	engineL0FilesDesc = prometheus.NewDesc("raftrix_engine_l0_files",
		"SSTables in level 0; many of them slow reads and stall writes.", nil, nil)
	engineL0SublevelsDesc = prometheus.NewDesc("raftrix_engine_l0_sublevels",
		"Sublevels of level 0 (its read amplification).", nil, nil)
	engineDiskDesc = prometheus.NewDesc("raftrix_engine_disk_usage_bytes",
		"Bytes the engine uses on disk: tables, WAL, blob files, manifests.", nil, nil)
	engineMemtableDesc = prometheus.NewDesc("raftrix_engine_memtable_bytes",
		"Bytes allocated by memtables (including zombie ones still referenced).", nil, nil)
	engineWALBytesDesc = prometheus.NewDesc("raftrix_engine_wal_written_bytes_total",
		"Bytes written to the write-ahead log since the engine was opened.", nil, nil)
	engineWALLiveDesc = prometheus.NewDesc("raftrix_engine_wal_bytes",
		"Live data in the write-ahead log files.", nil, nil)
	engineWALFsyncDesc = prometheus.NewDesc("raftrix_engine_wal_fsync_seconds",
		"Time of each fsync of the write-ahead log, the system call alone. "+
			"raftrix_engine_raft_sync_seconds is what a Raft round waits for its sync, "+
			"which includes the write of its batch and any earlier sync still running.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{engineCompactionsDesc, engineFlushesDesc, engineCompactionDebtDesc,
		engineL0FilesDesc, engineL0SublevelsDesc, engineDiskDesc, engineMemtableDesc, engineWALBytesDesc, engineWALLiveDesc, engineWALFsyncDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.db == nil {
		return
	}
	m := c.db.Metrics()
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	counter(engineCompactionsDesc, float64(m.Compact.Count))
	counter(engineFlushesDesc, float64(m.Flush.Count))
	gauge(engineCompactionDebtDesc, float64(m.Compact.EstimatedDebt))
	gauge(engineL0FilesDesc, float64(m.Levels[0].TablesCount))
	gauge(engineL0SublevelsDesc, float64(m.Levels[0].Sublevels))
	gauge(engineDiskDesc, float64(m.DiskSpaceUsage()))
	gauge(engineMemtableDesc, float64(m.MemTable.Size))
	counter(engineWALBytesDesc, float64(m.WAL.BytesWritten))
	gauge(engineWALLiveDesc, float64(m.WAL.Size))
	if h := m.LogWriter.FsyncLatency; h != nil {
		if hist, ok := fsyncHistogram(h); ok {
			ch <- hist
		}
	}
}

// fsyncHistogram exports Pebble's WAL fsync latency histogram as
// raftrix_engine_wal_fsync_seconds. Pebble keeps 100 buckets (in
// nanoseconds): every 100 µs up to 4.9 ms, then 50 growing exponentially
// to 10 s. The export keeps a subset of Pebble's own bounds, so every
// count stays where Pebble put it: 0.1, 0.2, 0.5, 1, 2, 3 and 4 ms, and
// every fifth of the exponential ones.
func fsyncHistogram(h prometheus.Histogram) (prometheus.Metric, bool) {
	var m dto.Metric
	if err := h.Write(&m); err != nil || m.Histogram == nil {
		return nil, false
	}
	ph := m.Histogram
	buckets := make(map[float64]uint64)
	exponential := 0
	for _, b := range ph.Bucket {
		ub := time.Duration(b.GetUpperBound())
		keep := false
		switch {
		case ub < 5*time.Millisecond:
			keep = ub == 100*time.Microsecond || ub == 200*time.Microsecond || ub == 500*time.Microsecond ||
				(ub >= time.Millisecond && ub%time.Millisecond == 0)
		default:
			keep = exponential%5 == 0
			exponential++
		}
		if keep {
			buckets[ub.Seconds()] = b.GetCumulativeCount()
		}
	}
	sum := time.Duration(ph.GetSampleSum()).Seconds()
	return prometheus.MustNewConstHistogram(engineWALFsyncDesc, ph.GetSampleCount(), sum, buckets), true
}

// detach stops the collector from reading the engine; it waits for a
// scrape in progress. Call it before closing the engine.
func (c *engineCollector) detach() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.db = nil
}

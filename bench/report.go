package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Histograms record latencies in microseconds from 1µs to 60s with 3
// significant digits; a longer latency is recorded as 60s.
const (
	histMinUs   = 1
	histMaxUs   = 60_000_000
	histSigFigs = 3
)

func newHist() *hdr.Histogram { return hdr.New(histMinUs, histMaxUs, histSigFigs) }

func recordUs(h *hdr.Histogram, d time.Duration) {
	us := d.Microseconds()
	if us < histMinUs {
		us = histMinUs
	}
	if us > histMaxUs {
		us = histMaxUs
	}
	_ = h.RecordValue(us) // in range by construction
}

// opStats is what a run measured for one operation type.
type opStats struct {
	hist      *hdr.Histogram // latencies of operations without error
	errs      map[string]int64
	misses    int64
	conflicts int64
}

func newOpStats() *opStats { return &opStats{hist: newHist(), errs: map[string]int64{}} }

func (s *opStats) merge(o *opStats) {
	s.hist.Merge(o.hist)
	for c, n := range o.errs {
		s.errs[c] += n
	}
	s.misses += o.misses
	s.conflicts += o.conflicts
}

// recorder collects the results of all workers. Workers are spread over a
// few shards, each with its own lock, so that recording is cheap and
// memory does not grow with --clients.
type recorder struct {
	shards []recShard
}

type recShard struct {
	// mu guards the fields below; the live reporter takes it once a second.
	mu sync.Mutex
	// ops holds the measured (post-warmup) results, created on first use.
	ops [numOps]*opStats
	// interval holds every latency since the live reporter last looked,
	// warmup included; intervalErrs counts errors over the same time.
	interval     *hdr.Histogram
	intervalErrs int64
	_            [64]byte // keep shards' locks off one cache line
}

func newRecorder(shards int) *recorder {
	r := &recorder{shards: make([]recShard, shards)}
	for i := range r.shards {
		r.shards[i].interval = newHist()
	}
	return r
}

// record adds one finished operation of worker w.
func (r *recorder) record(w int, k opKind, lat time.Duration, oc outcome, err error, measured bool) {
	code := ""
	if err != nil {
		code = errorCode(err)
	}
	s := &r.shards[w%len(r.shards)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.intervalErrs++
	} else {
		recordUs(s.interval, lat)
	}
	if !measured {
		return
	}
	st := s.ops[k]
	if st == nil {
		st = newOpStats()
		s.ops[k] = st
	}
	switch {
	case err != nil:
		st.errs[code]++
	default:
		recordUs(st.hist, lat)
		switch oc {
		case outcomeMiss:
			st.misses++
		case outcomeConflict:
			st.conflicts++
		}
	}
}

// takeInterval returns, and starts afresh, the latencies and error count
// since the last call.
func (r *recorder) takeInterval() (*hdr.Histogram, int64) {
	h, errs := newHist(), int64(0)
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		h.Merge(s.interval)
		s.interval.Reset()
		errs += s.intervalErrs
		s.intervalErrs = 0
		s.mu.Unlock()
	}
	return h, errs
}

// totals merges the measured results of every shard; nil where an
// operation type never ran.
func (r *recorder) totals() [numOps]*opStats {
	var out [numOps]*opStats
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		for k, st := range s.ops {
			if st == nil {
				continue
			}
			if out[k] == nil {
				out[k] = newOpStats()
			}
			out[k].merge(st)
		}
		s.mu.Unlock()
	}
	return out
}

// Report is the result of a run: what the final table shows and what
// --json writes. Latencies are in microseconds, rates in operations per
// second over the measured time (warmup excluded).
type Report struct {
	Workload string `json:"workload"` // e.g. "kv", "ycsb-A", "txn", "bank"
	// Label names the run for summaries (--label), e.g. "kv-read95";
	// empty when not given.
	Label      string   `json:"label,omitempty"`
	Params     string   `json:"params,omitempty"` // the workload's own knobs, e.g. "keys-per-txn=4 ranges-per-txn=4 ranges=64"
	Driver     string   `json:"driver"`           // raftrix or etcd
	Endpoints  []string `json:"endpoints"`        // as given
	Clients    int      `json:"clients"`          // concurrent workers
	Conns      int      `json:"conns"`            // connections
	TargetRate float64  `json:"target_rate"`      // ops/s; 0 is closed loop
	Seed       uint64   `json:"seed"`
	// Start is when the run (its warmup included) began.
	Start           time.Time `json:"start"`
	WarmupSeconds   float64   `json:"warmup_seconds"`
	MeasuredSeconds float64   `json:"measured_seconds"`
	// Unstarted counts, in an open-loop run with --duration, the operations
	// scheduled within the measured time that no client was free to start
	// before it ended: the clients could not keep up with the rate. Their
	// latency is unknown but at least the time they were overdue; the
	// latencies of the operations that did start include their queueing.
	Unstarted int64 `json:"unstarted"`
	// Ops has one entry per operation type that ran, in the order read,
	// update, insert, scan, rmw, txn, transfer.
	Ops []OpReport `json:"ops"`
	// Total sums every operation type.
	Total OpReport `json:"total"`
	// Bank is the bank workload's audit after the run.
	Bank *BankCheck `json:"bank,omitempty"`

	// CPUPids are the store's server processes given with --cpu-pids; the
	// CPU fields below are set only when they are. ServerCPUSeconds is the
	// user+system CPU time those processes used over the measured time,
	// ClientCPUSeconds that of the bench process itself, and CPUUsPerOp
	// their sum per operation of Total.Count, in microseconds.
	CPUPids          []int   `json:"cpu_pids,omitempty"`
	ServerCPUSeconds float64 `json:"server_cpu_seconds,omitempty"`
	ClientCPUSeconds float64 `json:"client_cpu_seconds,omitempty"`
	CPUUsPerOp       float64 `json:"cpu_us_per_op,omitempty"`
	// CPUPidsExited are those of CPUPids that exited during the measured
	// time: ServerCPUSeconds has their CPU only until they were last read
	// (at most LiveInterval before), so it and CPUUsPerOp are too low.
	CPUPidsExited []int `json:"cpu_pids_exited,omitempty"`
}

// OpReport is the result for one operation type, or for all of them.
type OpReport struct {
	Op string `json:"op"` // read, update, insert, scan, rmw, txn, transfer or total
	// Count is the operations that completed without error; misses and
	// conflicts are among them.
	Count     int64   `json:"count"`
	OpsPerSec float64 `json:"ops_per_sec"` // Count / measured seconds
	// Errors counts failed operations; ErrorsByCode splits them by gRPC
	// code name (Unavailable, DeadlineExceeded, …).
	Errors       int64            `json:"errors"`
	ErrorsByCode map[string]int64 `json:"errors_by_code,omitempty"`
	// Misses are reads (and read-modify-writes) that found no key.
	Misses int64 `json:"misses"`
	// Conflicts are read-modify-writes, transactions and transfers whose
	// compares failed because a key changed after it was read; they wrote
	// nothing.
	Conflicts int64 `json:"conflicts"`
	// LatencyUs summarises the latencies of Count operations.
	LatencyUs Latency `json:"latency_us"`
}

// Latency is a latency distribution's summary, in microseconds.
type Latency struct {
	Mean float64 `json:"mean"`
	P50  int64   `json:"p50"`
	P90  int64   `json:"p90"`
	P99  int64   `json:"p99"`
	P999 int64   `json:"p99_9"`
	Max  int64   `json:"max"`
}

func latencyOf(h *hdr.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		Mean: h.Mean(),
		P50:  h.ValueAtQuantile(50),
		P90:  h.ValueAtQuantile(90),
		P99:  h.ValueAtQuantile(99),
		P999: h.ValueAtQuantile(99.9),
		Max:  h.Max(),
	}
}

func opReportOf(name string, st *opStats, seconds float64) OpReport {
	r := OpReport{Op: name, Count: st.hist.TotalCount(), Misses: st.misses, Conflicts: st.conflicts, LatencyUs: latencyOf(st.hist)}
	if seconds > 0 {
		r.OpsPerSec = float64(r.Count) / seconds
	}
	for c, n := range st.errs {
		if r.ErrorsByCode == nil {
			r.ErrorsByCode = map[string]int64{}
		}
		r.ErrorsByCode[c] = n
		r.Errors += n
	}
	return r
}

// fillOps sets rep.Ops and rep.Total from a run's totals.
func (rep *Report) fillOps(totals [numOps]*opStats) {
	all := newOpStats()
	rep.Ops = nil
	for k, st := range totals {
		if st == nil {
			continue
		}
		rep.Ops = append(rep.Ops, opReportOf(opKind(k).String(), st, rep.MeasuredSeconds))
		all.merge(st)
	}
	rep.Total = opReportOf("total", all, rep.MeasuredSeconds)
}

// setCPU sets the CPU fields from what a cpuMeter of pids measured; call
// it after fillOps.
func (rep *Report) setCPU(pids []int, u cpuUsage) {
	rep.CPUPids = pids
	rep.ServerCPUSeconds = u.server.Seconds()
	rep.ClientCPUSeconds = u.client.Seconds()
	rep.CPUPidsExited = u.exited
	if rep.Total.Count > 0 {
		rep.CPUUsPerOp = (rep.ServerCPUSeconds + rep.ClientCPUSeconds) / float64(rep.Total.Count) * 1e6
	}
}

// WriteTable prints the report as a table with latencies in milliseconds,
// followed by error, miss and conflict counts where there are any.
func (rep *Report) WriteTable(w io.Writer) error {
	mode := "closed loop"
	if rep.TargetRate > 0 {
		mode = fmt.Sprintf("open loop at %g ops/s", rep.TargetRate)
	}
	name := rep.Workload
	if rep.Params != "" {
		name += " (" + rep.Params + ")"
	}
	fmt.Fprintf(w, "%s on %s: %d clients, %d conns, %s; %.1fs measured after %.1fs warmup\n",
		name, rep.Driver, rep.Clients, rep.Conns, mode, rep.MeasuredSeconds, rep.WarmupSeconds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	rows := append(append([]OpReport(nil), rep.Ops...), rep.Total)
	width := len("op")
	for _, r := range rows {
		width = max(width, len(r.Op))
	}
	fmt.Fprintf(tw, "%-*s\tcount\tops/s\tp50(ms)\tp90(ms)\tp99(ms)\tp99.9(ms)\tmax(ms)\terrors\t\n", width, "op")
	for _, r := range rows {
		l := r.LatencyUs
		// Padding the names to one width left-aligns them in a table
		// whose numbers are right-aligned.
		fmt.Fprintf(tw, "%-*s\t%d\t%.1f\t%s\t%s\t%s\t%s\t%s\t%d\t\n", width, r.Op, r.Count, r.OpsPerSec,
			ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max), r.Errors)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var notes []string
	for _, r := range rep.Ops {
		if r.Errors > 0 {
			notes = append(notes, fmt.Sprintf("%s errors: %s", r.Op, formatCodes(r.ErrorsByCode)))
		}
		if r.Misses > 0 {
			notes = append(notes, fmt.Sprintf("%s misses (key not found): %d", r.Op, r.Misses))
		}
		if r.Conflicts > 0 {
			notes = append(notes, fmt.Sprintf("%s conflicts (compare-and-set lost a race): %d (%.1f%%)", r.Op, r.Conflicts, 100*float64(r.Conflicts)/float64(r.Count)))
		}
	}
	if rep.Unstarted > 0 {
		notes = append(notes, fmt.Sprintf("warning: %d scheduled operations never started: %d clients could not keep up with %g ops/s; raise --clients or lower --rate",
			rep.Unstarted, rep.Clients, rep.TargetRate))
	}
	if len(rep.CPUPids) > 0 {
		n := fmt.Sprintf("CPU: servers %.2fs (pids %s), client %.2fs", rep.ServerCPUSeconds, joinInts(rep.CPUPids), rep.ClientCPUSeconds)
		if rep.MeasuredSeconds > 0 {
			n += fmt.Sprintf(", %.2f cores over %.1fs", (rep.ServerCPUSeconds+rep.ClientCPUSeconds)/rep.MeasuredSeconds, rep.MeasuredSeconds)
		}
		if rep.Total.Count > 0 {
			n += fmt.Sprintf("; %.1fµs per op", rep.CPUUsPerOp)
		}
		notes = append(notes, n)
		if len(rep.CPUPidsExited) > 0 {
			notes = append(notes, fmt.Sprintf("warning: --cpu-pids %s exited during the measured time; their CPU counts only until last read, so the servers' CPU and CPU per op are too low",
				joinInts(rep.CPUPidsExited)))
		}
	}
	if b := rep.Bank; b != nil {
		verdict := "conserved"
		if !b.Conserved {
			verdict = "NOT CONSERVED"
		}
		notes = append(notes, fmt.Sprintf("bank: %d accounts hold %d, want %d (%d negative; totals per pass %v): %s",
			b.Accounts, b.Total, b.Want, b.Negative, b.Totals, verdict))
	}
	for _, n := range notes {
		if _, err := fmt.Fprintln(w, n); err != nil {
			return err
		}
	}
	return nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// ms formats microseconds as milliseconds.
func ms(us int64) string { return fmt.Sprintf("%.3f", float64(us)/1000) }

// WriteJSONFile writes the report, indented, to path.
func (rep *Report) WriteJSONFile(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadJSONFile reads a report written by WriteJSONFile.
func ReadJSONFile(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rep := &Report{}
	if err := json.Unmarshal(b, rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rep, nil
}

// liveLine formats one second's progress for stderr.
func liveLine(elapsed time.Duration, warmup bool, h *hdr.Histogram, errs, errsTotal int64, secs float64, lag time.Duration) string {
	var b strings.Builder
	phase := "run"
	if warmup {
		phase = "warmup"
	}
	rate := 0.0
	if secs > 0 {
		rate = float64(h.TotalCount()) / secs
	}
	fmt.Fprintf(&b, "%6.1fs %-6s ops/s %9.1f  p50 %8sms  p99 %8sms  errors %d (total %d)",
		elapsed.Seconds(), phase, rate, ms(h.ValueAtQuantile(50)), ms(h.ValueAtQuantile(99)), errs, errsTotal)
	if lag > 0 {
		fmt.Fprintf(&b, "  behind schedule %s", lag.Round(time.Millisecond))
	}
	return b.String()
}

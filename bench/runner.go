package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
)

// RunConfig is the shape of the load.
type RunConfig struct {
	// Clients is the number of concurrent workers.
	Clients int
	// Duration is how long to measure after the warmup; 0 means until
	// Total operations. With both set, whichever comes first ends the run.
	Duration time.Duration
	// Total is the number of measured operations; 0 means until Duration.
	Total int64
	// Rate is the target throughput of all workers together, in ops/s, on
	// a fixed schedule (open loop); 0 means closed loop.
	Rate float64
	// Warmup runs before the measured time and is left out of the report.
	Warmup time.Duration
	// Timeout bounds each operation; 0 means no bound.
	Timeout time.Duration
	// Seed makes keys, values and operation choices reproducible.
	Seed uint64
	// Live, when set, receives a progress line every LiveInterval
	// (default one second).
	Live         io.Writer
	LiveInterval time.Duration
	// CPUPids are the store's server processes. When given, the report
	// has their CPU time and this process's over the measured time (see
	// Report.CPUPids); Run fails at once if one cannot be read.
	CPUPids []int
}

func (c *RunConfig) validate() error {
	switch {
	case c.Clients < 1:
		return fmt.Errorf("--clients must be at least 1, got %d", c.Clients)
	case c.Duration < 0 || c.Warmup < 0 || c.Timeout < 0:
		return errors.New("--duration, --warmup and --timeout must not be negative")
	case c.Total < 0:
		return fmt.Errorf("--total must not be negative, got %d", c.Total)
	case c.Duration == 0 && c.Total == 0:
		return errors.New("give --duration or --total: the run would never end")
	case c.Rate < 0:
		return fmt.Errorf("--rate must not be negative, got %g", c.Rate)
	}
	return nil
}

// schedule is the open loop's fixed plan: operation k (counted from 0 over
// all workers) is meant to start at start + k/rate, whenever the previous
// operations actually ran.
type schedule struct {
	start time.Time
	rate  float64 // ops/s, > 0
}

func (s schedule) at(k uint64) time.Time {
	return s.start.Add(time.Duration(float64(k) * float64(time.Second) / s.rate))
}

// firstAtOrAfter returns the first operation scheduled at or after t.
func (s schedule) firstAtOrAfter(t time.Time) uint64 {
	if !t.After(s.start) {
		return 0
	}
	k := uint64(t.Sub(s.start).Seconds() * s.rate)
	// Correct the float estimate against at(), which is the truth.
	for k > 0 && !s.at(k-1).Before(t) {
		k--
	}
	for s.at(k).Before(t) {
		k++
	}
	return k
}

// run is one benchmark run in progress.
type run struct {
	cfg       RunConfig
	wl        *workload
	d         Driver
	rec       *recorder
	sched     schedule
	warmupEnd time.Time
	end       time.Time // zero: no time limit
	seq       atomic.Uint64
	measured  atomic.Int64 // measured operations claimed (may pass Total)
}

// Run benchmarks d with spec and returns the measured results. Report's
// descriptive fields (Driver, Endpoints, Conns) are left for the caller.
// Cancelling ctx stops the run early; what was measured until then is
// reported.
func Run(ctx context.Context, cfg RunConfig, spec Spec, d Driver) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	wl, err := newWorkload(spec, cfg.Seed)
	if err != nil {
		return nil, err
	}
	if err := checkDriverFor(spec, d); err != nil {
		return nil, err
	}
	if cfg.LiveInterval <= 0 {
		cfg.LiveInterval = time.Second
	}
	var cpu *cpuMeter
	if len(cfg.CPUPids) > 0 {
		if cpu, err = newCPUMeter(cfg.CPUPids); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	r := &run{
		cfg: cfg, wl: wl, d: d,
		rec:       newRecorder(min(cfg.Clients, 4*runtime.GOMAXPROCS(0))),
		sched:     schedule{start: start, rate: cfg.Rate},
		warmupEnd: start.Add(cfg.Warmup),
	}
	if cfg.Duration > 0 {
		r.end = r.warmupEnd.Add(cfg.Duration)
	}

	var wg sync.WaitGroup
	for i := 0; i < cfg.Clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.worker(ctx, i)
		}()
	}
	done := make(chan struct{})
	liveDone := make(chan struct{})
	go func() {
		defer close(liveDone)
		r.live(start, done)
	}()
	cpuUsed := make(chan *cpuUsage, 1)
	if cpu != nil {
		go func() { cpuUsed <- r.measureCPU(cpu, done) }()
	} else {
		cpuUsed <- nil
	}
	wg.Wait()
	close(done)
	<-liveDone

	measuredEnd := time.Now()
	if !r.end.IsZero() && measuredEnd.After(r.end) {
		measuredEnd = r.end
	}
	rep := &Report{
		Workload:        spec.Name,
		Clients:         cfg.Clients,
		TargetRate:      cfg.Rate,
		Seed:            cfg.Seed,
		Start:           start,
		WarmupSeconds:   cfg.Warmup.Seconds(),
		MeasuredSeconds: max(0, measuredEnd.Sub(r.warmupEnd).Seconds()),
	}
	if cfg.Rate > 0 && !r.end.IsZero() {
		started := r.measured.Load()
		if cfg.Total > 0 {
			started = min(started, cfg.Total)
		}
		scheduled := int64(r.sched.firstAtOrAfter(measuredEnd)) - int64(r.sched.firstAtOrAfter(r.warmupEnd))
		rep.Unstarted = max(0, scheduled-started)
	}
	rep.fillOps(r.rec.totals())
	if u := <-cpuUsed; u != nil {
		rep.setCPU(cfg.CPUPids, *u)
	}
	return rep, nil
}

// measureCPU reads m when the measured time begins and when it ends (at
// the end of --duration, or when the workers are done), and once every
// LiveInterval between, so that a server that exits still counts the CPU
// it used until then. It returns nil when the run ended before its
// measured time began.
func (r *run) measureCPU(m *cpuMeter, done <-chan struct{}) *cpuUsage {
	warm := time.NewTimer(time.Until(r.warmupEnd))
	defer warm.Stop()
	select {
	case <-warm.C:
	case <-done:
		return nil
	}
	m.begin()
	var end <-chan time.Time
	if !r.end.IsZero() {
		t := time.NewTimer(time.Until(r.end))
		defer t.Stop()
		end = t.C
	}
	tick := time.NewTicker(r.cfg.LiveInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			m.sample()
		case <-end:
			return m.end()
		case <-done:
			return m.end()
		}
	}
}

// worker runs operations until the run ends.
func (r *run) worker(ctx context.Context, id int) {
	wk := r.wl.newWorker(id)
	var timer *time.Timer
	for ctx.Err() == nil {
		var intended time.Time
		if r.cfg.Rate > 0 {
			intended = r.sched.at(r.seq.Add(1) - 1)
		} else {
			intended = time.Now()
		}
		if !r.end.IsZero() && (!intended.Before(r.end) || !time.Now().Before(r.end)) {
			// Past the end, or (open loop) still scheduled within it but
			// reached too late: Run counts the latter as unstarted.
			return
		}
		measured := !intended.Before(r.warmupEnd)
		if measured {
			if n := r.measured.Add(1); r.cfg.Total > 0 && n > r.cfg.Total {
				return
			}
		}
		if wait := time.Until(intended); wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
		kind := wk.nextOp()
		octx, cancel := ctx, context.CancelFunc(func() {})
		if r.cfg.Timeout > 0 {
			octx, cancel = context.WithTimeout(ctx, r.cfg.Timeout)
		}
		oc, err := wk.do(octx, r.d, kind)
		cancel()
		lat := time.Since(intended)
		if ctx.Err() != nil {
			return // interrupted: this operation says nothing about the store
		}
		r.rec.record(id, kind, lat, oc, err, measured)
	}
}

// live writes a progress line every LiveInterval until done is closed.
func (r *run) live(start time.Time, done <-chan struct{}) {
	t := time.NewTicker(r.cfg.LiveInterval)
	defer t.Stop()
	last := start
	var errsTotal int64
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			h, errs := r.rec.takeInterval()
			errsTotal += errs
			if r.cfg.Live == nil {
				continue
			}
			var lag time.Duration
			if r.cfg.Rate > 0 {
				// The oldest operation a worker has not yet begun.
				lag = now.Sub(r.sched.at(r.seq.Load()))
			}
			fmt.Fprintln(r.cfg.Live, liveLine(now.Sub(start), last.Before(r.warmupEnd), h, errs, errsTotal, now.Sub(last).Seconds(), lag))
			last = now
		}
	}
}

// checkDriverFor refuses a driver that cannot run spec's operations.
func checkDriverFor(spec Spec, d Driver) error {
	if _, ok := d.(TxnDriver); spec.needsTxn() && !ok {
		return fmt.Errorf("workload %s needs transactions, which this driver (%T) does not run", spec.Name, d)
	}
	return nil
}

// loadMinClients is the fewest writers Load uses, so that loading for a
// single-client latency run does not take a write round trip per key.
const loadMinClients = 64

// loadBatch is how many keys of one range the txn workload's load writes
// per transaction (a single Raft command on RaftrixDB).
const loadBatch = 16

// Load writes keys 0..spec.Keys-1 once each, with cfg.Clients workers (at
// least loadMinClients) in a closed loop, unmeasured, so that reads of the
// run find them: a random value, the bank's accounts their initial balance;
// the txn workload's keys loadBatch keys of one range per transaction,
// which tells their revision. Every load write is a blind put, which may
// apply twice, so a write that failed with Unavailable (a leader election)
// or DeadlineExceeded (an overloaded store) is retried a few times; any
// other error ends the load.
func Load(ctx context.Context, cfg RunConfig, spec Spec, d Driver) error {
	wl, err := newWorkload(spec, cfg.Seed)
	if err != nil {
		return err
	}
	if cfg.Clients < 1 {
		return fmt.Errorf("--clients must be at least 1, got %d", cfg.Clients)
	}
	if err := checkDriverFor(spec, d); err != nil {
		return err
	}
	cfg.Clients = max(cfg.Clients, loadMinClients)
	if cfg.LiveInterval <= 0 {
		cfg.LiveInterval = time.Second
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next, loaded atomic.Uint64
	units := wl.loadUnits()
	var wg sync.WaitGroup
	for i := 0; i < cfg.Clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wk := wl.newWorker(i)
			for ctx.Err() == nil {
				u := next.Add(1) - 1
				if u >= units {
					return
				}
				n, err := wl.loadUnit(ctx, cfg.Timeout, d, wk, u)
				if err != nil {
					cancel(fmt.Errorf("load: %w", err))
					return
				}
				loaded.Add(n)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	start := time.Now()
	t := time.NewTicker(cfg.LiveInterval)
	defer t.Stop()
	for {
		select {
		case <-done:
			if err := context.Cause(ctx); err != nil {
				return err
			}
			if cfg.Live != nil {
				fmt.Fprintf(cfg.Live, "loaded %d keys in %s\n", spec.Keys, time.Since(start).Round(time.Millisecond))
			}
			return nil
		case <-t.C:
			if cfg.Live != nil {
				fmt.Fprintf(cfg.Live, "%6.1fs load   %d/%d keys\n", time.Since(start).Seconds(), loaded.Load(), spec.Keys)
			}
		}
	}
}

// loadUnits is the number of units of work of the load: keys, or batches
// of keys of one range for the txn workload. Batch u holds range u mod
// --ranges, some of them none.
func (wl *workload) loadUnits() uint64 {
	if wl.spec.Txn == 0 {
		return wl.spec.Keys
	}
	perRange := wl.layout.keysIn(0, wl.spec.Keys) // range 0 holds the most
	return uint64(wl.spec.Ranges) * ((perRange + loadBatch - 1) / loadBatch)
}

// loadUnit writes unit u of the load with worker wk's buffers and returns
// how many keys it wrote.
func (wl *workload) loadUnit(ctx context.Context, timeout time.Duration, d Driver, wk *worker, u uint64) (uint64, error) {
	switch {
	case wl.spec.Txn > 0:
		r := wl.layout.rangeOf(u)
		j0, j1 := (u/uint64(wl.spec.Ranges))*loadBatch, wl.layout.keysIn(r, wl.spec.Keys)
		j1 = min(j1, j0+loadBatch)
		if j0 >= j1 {
			return 0, nil
		}
		m := &wk.multi
		m.idx = m.idx[:0]
		for j := j0; j < j1; j++ {
			m.idx = append(m.idx, wl.layout.index(r, j))
		}
		m.setKeys(wl)
		for j := range m.values {
			m.values[j] = wl.values.value(wk.rng)
		}
		td := d.(TxnDriver)
		err := retryUnavailable(ctx, timeout, func(ctx context.Context) error {
			res, err := td.CompareAndPutAll(ctx, m.keys, m.values, nil, false)
			if err == nil {
				for _, i := range m.idx {
					wl.revs.observe(i, res.Revision)
				}
			}
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("keys %q..: %w", m.keys[0], err)
		}
		return uint64(len(m.idx)), nil
	case wl.spec.Transfer > 0:
		key := wk.keyAt(u)
		err := retryUnavailable(ctx, timeout, func(ctx context.Context) error {
			return d.Put(ctx, key, strconv.AppendInt(nil, bankInitialBalance, 10))
		})
		if err != nil {
			return 0, fmt.Errorf("account %q: %w", key, err)
		}
		return 1, nil
	}
	key := wk.keyAt(u)
	value := wl.values.value(wk.rng)
	if err := retryUnavailable(ctx, timeout, func(ctx context.Context) error { return d.Put(ctx, key, value) }); err != nil {
		return 0, fmt.Errorf("key %d: %w", u, err)
	}
	return 1, nil
}

// retryUnavailable runs f, each time bounded by timeout if not 0, until it
// returns anything but Unavailable or DeadlineExceeded, at most 10 times.
// f must be safe to apply more than once.
func retryUnavailable(ctx context.Context, timeout time.Duration, f func(context.Context) error) error {
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		octx, cancel := ctx, context.CancelFunc(func() {})
		if timeout > 0 {
			octx, cancel = context.WithTimeout(ctx, timeout)
		}
		err = f(octx)
		cancel()
		if c := errorCode(err); err == nil || (c != codes.Unavailable.String() && c != codes.DeadlineExceeded.String()) || ctx.Err() != nil {
			return err
		}
		select {
		case <-time.After(time.Duration(attempt+1) * 50 * time.Millisecond):
		case <-ctx.Done():
			return err
		}
	}
	return err
}

// WaitReady reads one key until the store answers, for up to wait: a fresh
// cluster is Unavailable until its ranges have leaders. Any other error
// ends the wait at once.
func WaitReady(ctx context.Context, d Driver, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	key := appendKey(nil, 0, minKeySize)
	for {
		actx, acancel := context.WithTimeout(ctx, time.Second)
		_, _, err := d.Get(actx, key)
		acancel()
		if err == nil {
			return nil
		}
		code := errorCode(err)
		if code != codes.Unavailable.String() && code != codes.DeadlineExceeded.String() {
			return fmt.Errorf("store not ready: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("store not ready after %s: %w", wait, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

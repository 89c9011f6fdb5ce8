package bench

import (
	"context"
	"math"
	"os"
	"reflect"
	"testing"
	"time"
)

func testSpec(t *testing.T) Spec {
	t.Helper()
	s, err := KVSpec(KVOptions{ReadFraction: 0.5, Keys: 100, KeySize: 16, ValueSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestScheduleFollowsRate(t *testing.T) {
	start := time.Unix(1000, 0)
	s := schedule{start: start, rate: 400}
	for _, k := range []uint64{0, 1, 2, 399, 400, 4000, 1_000_003} {
		want := start.Add(time.Duration(float64(k) * 2.5 * float64(time.Millisecond)))
		if got := s.at(k); !got.Equal(want) {
			t.Errorf("at(%d) = %v after start, want %v", k, got.Sub(start), want.Sub(start))
		}
	}
	for _, d := range []time.Duration{0, time.Millisecond, 2500 * time.Microsecond, time.Second, 7*time.Second + 1} {
		k := s.firstAtOrAfter(start.Add(d))
		if s.at(k).Before(start.Add(d)) || (k > 0 && !s.at(k-1).Before(start.Add(d))) {
			t.Errorf("firstAtOrAfter(+%v) = %d: at(k) = +%v", d, k, s.at(k).Sub(start))
		}
	}
}

// In an open-loop run, operations start when the schedule says, not when a
// worker happens to be free.
func TestOpenLoopStartsOnSchedule(t *testing.T) {
	d := newMemDriver()
	cfg := RunConfig{Clients: 4, Rate: 400, Duration: 500 * time.Millisecond, Timeout: time.Second, Seed: 1}
	rep, err := Run(context.Background(), cfg, testSpec(t), d)
	if err != nil {
		t.Fatal(err)
	}
	starts := d.startTimes()
	// 0.5s at 400/s is 200 operations; on a loaded machine a few may not
	// have started before the end, and must then be counted as unstarted.
	if n := int64(len(starts)); n < 150 || n+rep.Unstarted != 200 {
		t.Fatalf("%d operations started and %d unstarted, want 200 in all", n, rep.Unstarted)
	}
	s := schedule{start: rep.Start, rate: cfg.Rate}
	late := 0
	for k, at := range starts {
		if at.Before(s.at(uint64(k)).Add(-time.Millisecond)) {
			t.Fatalf("operation %d started %v before its time", k, s.at(uint64(k)).Sub(at))
		}
		if at.Sub(s.at(uint64(k))) > 50*time.Millisecond {
			late++
		}
	}
	if late > len(starts)/5 {
		t.Errorf("%d of %d operations started over 50ms late", late, len(starts))
	}
	if rep.Total.Count != int64(len(starts)) || rep.Total.Errors != 0 {
		t.Errorf("report: count %d, errors %d; driver saw %d", rep.Total.Count, rep.Total.Errors, len(starts))
	}
	if want := float64(len(starts)) / 0.5; math.Abs(rep.Total.OpsPerSec-want) > 0.1*want {
		t.Errorf("ops/s = %.1f, want ~%.0f", rep.Total.OpsPerSec, want)
	}
}

// A store slower than the rate makes operations queue; the open loop must
// show that wait in the latencies (no coordinated omission), while a closed
// loop on the same store only sees the service time.
func TestOpenLoopLatencyIncludesQueueing(t *testing.T) {
	const service = 20 * time.Millisecond
	spec := testSpec(t)
	open, err := Run(context.Background(), RunConfig{Clients: 1, Rate: 100, Duration: 300 * time.Millisecond, Seed: 1},
		spec, &memDriver{kvs: map[string]int64{}, delay: service})
	if err != nil {
		t.Fatal(err)
	}
	closed, err := Run(context.Background(), RunConfig{Clients: 1, Duration: 300 * time.Millisecond, Seed: 1},
		spec, &memDriver{kvs: map[string]int64{}, delay: service})
	if err != nil {
		t.Fatal(err)
	}
	// Capacity is 50/s against 100/s scheduled: by the end, the operation
	// running was due about 150ms earlier.
	if m := open.Total.LatencyUs.Max; m < 100_000 {
		t.Errorf("open loop max latency %dµs, want over 100ms of queueing", m)
	}
	if open.Unstarted < 5 {
		t.Errorf("open loop: %d unstarted operations, want about 15", open.Unstarted)
	}
	if p50 := closed.Total.LatencyUs.P50; p50 < 19_000 || p50 > 100_000 {
		t.Errorf("closed loop p50 %dµs, want about the 20ms service time", p50)
	}
	if closed.Unstarted != 0 {
		t.Errorf("closed loop reports %d unstarted", closed.Unstarted)
	}
}

func TestTotalAndWarmup(t *testing.T) {
	d := newMemDriver()
	cfg := RunConfig{Clients: 4, Total: 500, Warmup: 100 * time.Millisecond, Seed: 1}
	rep, err := Run(context.Background(), cfg, testSpec(t), d)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Total.Count != 500 {
		t.Errorf("measured %d operations, want exactly --total 500", rep.Total.Count)
	}
	if n := len(d.startTimes()); n <= 500 {
		t.Errorf("driver saw %d operations; the warmup's are missing", n)
	}
	if rep.WarmupSeconds != 0.1 || rep.MeasuredSeconds <= 0 {
		t.Errorf("warmup %gs, measured %gs", rep.WarmupSeconds, rep.MeasuredSeconds)
	}
	if err := (&RunConfig{Clients: 1}).validate(); err == nil {
		t.Error("a run with neither --duration nor --total was accepted")
	}
}

func TestCancelEndsTheRunEarly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	rep, err := Run(ctx, RunConfig{Clients: 2, Duration: time.Minute, Seed: 1}, testSpec(t),
		&memDriver{kvs: map[string]int64{}, delay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("run took %v after cancel", took)
	}
	if rep.Total.Count == 0 || rep.Total.Errors != 0 || rep.MeasuredSeconds > 1 {
		t.Errorf("count %d, errors %d, measured %gs", rep.Total.Count, rep.Total.Errors, rep.MeasuredSeconds)
	}
}

func TestLoadWritesEveryKey(t *testing.T) {
	d := newMemDriver()
	spec := testSpec(t)
	if err := Load(context.Background(), RunConfig{Clients: 3, Seed: 1}, spec, d); err != nil {
		t.Fatal(err)
	}
	if len(d.kvs) != int(spec.Keys) {
		t.Fatalf("loaded %d keys, want %d", len(d.kvs), spec.Keys)
	}
	for i := uint64(0); i < spec.Keys; i++ {
		if _, ok := d.kvs[string(appendKey(nil, i, spec.KeySize))]; !ok {
			t.Fatalf("key %d not loaded", i)
		}
	}
}

// --cpu-pids: the run reports CPU over its measured time, and refuses at
// once a pid it cannot read.
func TestRunMeasuresCPU(t *testing.T) {
	skipWithoutProc(t)
	cfg := RunConfig{Clients: 2, Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond, Seed: 1, CPUPids: []int{1 << 30}}
	if _, err := Run(context.Background(), cfg, testSpec(t), newMemDriver()); err == nil {
		t.Fatal("Run accepted an unreadable --cpu-pids")
	}
	// This process stands in for the store's server: the in-memory
	// driver's operations run in it.
	cfg.CPUPids = []int{os.Getpid()}
	rep, err := Run(context.Background(), cfg, testSpec(t), newMemDriver())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rep.CPUPids, cfg.CPUPids) || rep.ClientCPUSeconds <= 0 || len(rep.CPUPidsExited) != 0 {
		t.Fatalf("cpu pids %v (exited %v), client %gs", rep.CPUPids, rep.CPUPidsExited, rep.ClientCPUSeconds)
	}
	if want := (rep.ServerCPUSeconds + rep.ClientCPUSeconds) / float64(rep.Total.Count) * 1e6; rep.Total.Count == 0 || rep.CPUUsPerOp != want {
		t.Errorf("cpu µs/op %g, want %g over %d ops", rep.CPUUsPerOp, want, rep.Total.Count)
	}

	// Without --cpu-pids there are no CPU fields.
	cfg.CPUPids = nil
	if rep, err = Run(context.Background(), cfg, testSpec(t), newMemDriver()); err != nil {
		t.Fatal(err)
	}
	if rep.CPUPids != nil || rep.ClientCPUSeconds != 0 || rep.CPUUsPerOp != 0 {
		t.Errorf("run without --cpu-pids reports CPU: pids %v, client %gs, %gµs/op", rep.CPUPids, rep.ClientCPUSeconds, rep.CPUUsPerOp)
	}
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestPercentilesOfKnownValues(t *testing.T) {
	rec := newRecorder(3)
	for us := 1; us <= 1000; us++ {
		rec.record(us, opRead, time.Duration(us)*time.Microsecond, outcomeOK, nil, true)
	}
	rep := &Report{MeasuredSeconds: 2}
	rep.fillOps(rec.totals())
	if len(rep.Ops) != 1 || rep.Ops[0].Op != "read" {
		t.Fatalf("ops = %+v", rep.Ops)
	}
	got := rep.Ops[0]
	want := Latency{Mean: 500.5, P50: 500, P90: 900, P99: 990, P999: 999, Max: 1000}
	// Values below 2048µs are exact at 3 significant digits; the mean is
	// computed from bucket midpoints, so allow it a little slack.
	if got.LatencyUs.P50 != want.P50 || got.LatencyUs.P90 != want.P90 || got.LatencyUs.P99 != want.P99 ||
		got.LatencyUs.P999 != want.P999 || got.LatencyUs.Max != want.Max || got.LatencyUs.Mean < 499 || got.LatencyUs.Mean > 502 {
		t.Errorf("latency = %+v, want %+v", got.LatencyUs, want)
	}
	if got.Count != 1000 || got.OpsPerSec != 500 || rep.Total.Count != 1000 {
		t.Errorf("count %d, ops/s %g, total %d", got.Count, got.OpsPerSec, rep.Total.Count)
	}
}

func TestRecorderSeparatesWarmupErrorsMissesAndConflicts(t *testing.T) {
	rec := newRecorder(2)
	ms := time.Millisecond
	rec.record(0, opRead, ms, outcomeOK, nil, false) // warmup: live line only
	rec.record(0, opRead, ms, outcomeMiss, nil, true)
	rec.record(1, opRead, 2*ms, outcomeOK, nil, true)
	rec.record(1, opRead, 9*ms, outcomeOK, status.Error(codes.Unavailable, "no leader"), true)
	rec.record(0, opRMW, 3*ms, outcomeConflict, nil, true)
	rec.record(0, opUpdate, 60*time.Second+time.Hour, outcomeOK, nil, true) // clamped to 60s
	rec.record(1, opUpdate, 0, outcomeOK, fmt.Errorf("put: %w", context.DeadlineExceeded), true)

	live, liveErrs := rec.takeInterval()
	if live.TotalCount() != 5 || liveErrs != 2 {
		t.Errorf("live interval: %d latencies, %d errors; want 5, 2", live.TotalCount(), liveErrs)
	}
	if h, e := rec.takeInterval(); h.TotalCount() != 0 || e != 0 {
		t.Errorf("interval not reset: %d, %d", h.TotalCount(), e)
	}
	rep := &Report{MeasuredSeconds: 1}
	rep.fillOps(rec.totals())
	byOp := map[string]OpReport{}
	for _, o := range rep.Ops {
		byOp[o.Op] = o
	}
	if r := byOp["read"]; r.Count != 2 || r.Misses != 1 || r.Errors != 1 || r.ErrorsByCode["Unavailable"] != 1 {
		t.Errorf("read = %+v", r)
	}
	if r := byOp["rmw"]; r.Count != 1 || r.Conflicts != 1 {
		t.Errorf("rmw = %+v", r)
	}
	if r := byOp["update"]; r.LatencyUs.Max < 59_000_000 || r.ErrorsByCode["DeadlineExceeded"] != 1 {
		t.Errorf("update = %+v", r)
	}
	if rep.Total.Count != 4 || rep.Total.Errors != 2 {
		t.Errorf("total = %+v", rep.Total)
	}
	var b strings.Builder
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"read errors: Unavailable=1", "rmw conflicts", "read misses", "p99.9(ms)", "total"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, b.String())
		}
	}
}

func TestErrorCode(t *testing.T) {
	for err, want := range map[error]string{
		status.Error(codes.Unavailable, "x"):       "Unavailable",
		status.Error(codes.FailedPrecondition, ""): "FailedPrecondition",
		errors.New("plain"):                        "Unknown",
		fmt.Errorf("get: %w", context.Canceled):    "Canceled",
	} {
		if got := errorCode(err); got != want {
			t.Errorf("errorCode(%v) = %s, want %s", err, got, want)
		}
	}
}

func TestReportJSONRoundTrip(t *testing.T) {
	rec := newRecorder(1)
	for i := 1; i <= 100; i++ {
		rec.record(0, opScan, time.Duration(i)*time.Millisecond, outcomeOK, nil, true)
	}
	rec.record(0, opInsert, time.Millisecond, outcomeOK, status.Error(codes.DeadlineExceeded, "slow"), true)
	rep := &Report{
		Workload: "ycsb-E", Driver: "raftrix", Endpoints: []string{"a:1", "b:2"}, Clients: 8, Conns: 2,
		TargetRate: 100, Seed: 9, Start: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		WarmupSeconds: 1, MeasuredSeconds: 10, Unstarted: 3,
	}
	rep.fillOps(rec.totals())
	rep.setCPU([]int{11, 12, 13}, cpuUsage{server: 3 * time.Second, client: time.Second, exited: []int{12}})
	path := filepath.Join(t.TempDir(), "r.json")
	if err := rep.WriteJSONFile(path); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJSONFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rep) {
		t.Fatalf("round trip changed the report:\n got %+v\nwant %+v", got, rep)
	}
	if got.Ops[1].LatencyUs.P50 < 49_000 || got.Ops[1].LatencyUs.P50 > 51_000 {
		t.Errorf("scan p50 = %dµs, want ~50ms", got.Ops[1].LatencyUs.P50)
	}
}

func TestCPUInTableAndSummary(t *testing.T) {
	report := func(driver string, count int64, cpu *cpuUsage) *Report {
		rec := newRecorder(1)
		for i := int64(0); i < count; i++ {
			rec.record(0, opUpdate, time.Millisecond, outcomeOK, nil, true)
		}
		rep := &Report{Workload: "kv", Label: "kv-write", Driver: driver, Clients: 4, MeasuredSeconds: 2}
		rep.fillOps(rec.totals())
		if cpu != nil {
			rep.setCPU([]int{7, 8, 9}, *cpu)
		}
		return rep
	}
	// 1000 ops on 0.3s of servers' CPU and 0.1s of the client's: 400µs/op.
	rx := report(DriverRaftrix, 1000, &cpuUsage{server: 300 * time.Millisecond, client: 100 * time.Millisecond, exited: []int{8}})
	if rx.CPUUsPerOp < 399.999 || rx.CPUUsPerOp > 400.001 {
		t.Errorf("cpu µs/op = %g, want 400", rx.CPUUsPerOp)
	}
	var b strings.Builder
	if err := rx.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"CPU: servers 0.30s (pids 7,8,9), client 0.10s, 0.20 cores over 2.0s; 400.0µs per op", "pids 8 exited"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, b.String())
		}
	}

	// etcd: 200µs/op, so RaftrixDB spends twice as much.
	et := report(DriverEtcd, 1000, &cpuUsage{server: 150 * time.Millisecond, client: 50 * time.Millisecond})
	b.Reset()
	if err := WriteSummary(&b, []*Report{rx, et}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "| raftrix CPU µs/op |") || !strings.Contains(lines[0], "| CPU µs/op raftrix/etcd |") {
		t.Fatalf("summary:\n%s", b.String())
	}
	cols := func(line string) []string { return strings.Split(strings.Trim(line, "|"), "|") }
	if h, a, r := cols(lines[0]), cols(lines[1]), cols(lines[2]); len(h) != 15 || len(a) != len(h) || len(r) != len(h) {
		t.Fatalf("summary has %d, %d, %d columns, want 15:\n%s", len(h), len(a), len(r), b.String())
	}
	for _, s := range []string{"| 400 |", "| 200 |", "| 2.00 |", "raftrix CPU too low"} {
		if !strings.Contains(lines[2], s) {
			t.Errorf("summary row lacks %q: %s", s, lines[2])
		}
	}

	// Without CPU in any report, no CPU columns.
	b.Reset()
	if err := WriteSummary(&b, []*Report{report(DriverRaftrix, 10, nil), report(DriverEtcd, 10, nil)}); err != nil {
		t.Fatal(err)
	}
	if s := b.String(); strings.Contains(s, "CPU") || len(cols(strings.SplitN(s, "\n", 2)[0])) != 12 {
		t.Errorf("summary without CPU:\n%s", s)
	}
}

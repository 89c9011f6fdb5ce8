package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"syscall"
	"time"
)

// clockTicksPerSecond is USER_HZ, the unit of utime and stime in
// /proc/PID/stat. Reading it properly is sysconf(_SC_CLK_TCK), which needs
// cgo; Linux fixes it at 100 on every architecture Go runs on (only alpha
// and ia64 differed).
const clockTicksPerSecond = 100

// procCPU returns the user+system CPU time that process pid (all its
// threads, exited ones included) has used, from /proc/PID/stat, to the
// clock tick (10ms).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("pid %d: no such process (%w)", pid, err)
	}
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	ticks, err := parseStatCPU(b)
	if err != nil {
		return 0, fmt.Errorf("pid %d: /proc/%d/stat: %w", pid, pid, err)
	}
	return time.Duration(ticks) * time.Second / clockTicksPerSecond, nil
}

// parseStatCPU returns utime+stime, in clock ticks, of a /proc/PID/stat
// line: "pid (comm) state ppid … utime stime …", utime and stime being
// fields 14 and 15. comm may itself hold spaces and parentheses, so the
// fields are counted from the last ')'.
func parseStatCPU(stat []byte) (uint64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no ')' after the command name")
	}
	f := bytes.Fields(stat[i+1:]) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	var sum uint64
	for _, s := range f[11:13] {
		n, err := strconv.ParseUint(string(s), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("utime/stime: %w", err)
		}
		sum += n
	}
	return sum, nil
}

// selfCPU returns the user+system CPU time this process has used, to the
// microsecond.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		// Only EFAULT or EINVAL, neither possible with these arguments.
		panic(fmt.Sprintf("getrusage: %v", err))
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter measures the CPU time that the store's server processes and
// this process use between begin and end. It is not safe for concurrent
// use.
type cpuMeter struct {
	pids  []int
	first []time.Duration // at begin
	last  []time.Duration // at the latest reading
	// gone marks the pids that could no longer be read (or went backwards:
	// the pid was reused); last holds their final reading.
	gone  []bool
	self0 time.Duration
}

// cpuUsage is what a cpuMeter measured.
type cpuUsage struct {
	server, client time.Duration
	exited         []int // pids that exited before the end
}

// newCPUMeter returns a meter of pids, or an error naming the first pid
// that cannot be read.
func newCPUMeter(pids []int) (*cpuMeter, error) {
	for _, pid := range pids {
		if _, err := procCPU(pid); err != nil {
			return nil, fmt.Errorf("--cpu-pids: %w", err)
		}
	}
	n := len(pids)
	return &cpuMeter{pids: pids, first: make([]time.Duration, n), last: make([]time.Duration, n), gone: make([]bool, n)}, nil
}

// begin starts the measurement.
func (m *cpuMeter) begin() {
	m.self0 = selfCPU()
	for i, pid := range m.pids {
		t, err := procCPU(pid)
		m.first[i], m.last[i], m.gone[i] = t, t, err != nil
	}
}

// sample reads the pids still there, so that one that exits later still
// counts the CPU it used until now.
func (m *cpuMeter) sample() {
	for i, pid := range m.pids {
		if m.gone[i] {
			continue
		}
		t, err := procCPU(pid)
		if err != nil || t < m.last[i] {
			m.gone[i] = true
			continue
		}
		m.last[i] = t
	}
}

// end reads everything a last time and returns the CPU used since begin.
func (m *cpuMeter) end() *cpuUsage {
	m.sample()
	u := &cpuUsage{client: selfCPU() - m.self0}
	for i, pid := range m.pids {
		u.server += m.last[i] - m.first[i]
		if m.gone[i] {
			u.exited = append(u.exited, pid)
		}
	}
	return u
}

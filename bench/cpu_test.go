package bench

import (
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"
)

func skipWithoutProc(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skipf("no /proc: %v", err)
	}
}

// spin burns at least d of this process's CPU time.
func spin(d time.Duration) uint64 {
	var x uint64
	for start := selfCPU(); selfCPU()-start < d; {
		for i := 0; i < 100_000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	return x
}

var spinSink uint64

func TestProcCPURisesWithBusyLoop(t *testing.T) {
	skipWithoutProc(t)
	p0, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	s0 := selfCPU()
	spinSink += spin(200 * time.Millisecond)
	s1 := selfCPU()
	p1, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Both read the kernel's account of the whole process; /proc only to
	// the 10ms tick.
	if p1-p0 < (s1-s0)/2 {
		t.Errorf("/proc/self/stat rose %v while getrusage rose %v", p1-p0, s1-s0)
	}
}

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and parentheses; utime 1234, stime 56.
	line := "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1234 56 0 0 20 0 9 0 100 1000000 300 18446744073709551615\n"
	got, err := parseStatCPU([]byte(line))
	if err != nil || got != 1290 {
		t.Errorf("parseStatCPU = %d, %v; want 1290 ticks", got, err)
	}
	for _, bad := range []string{"", "4242 (x) S 1 2", "4242 (x) S 1 2 3 4 5 6 7 8 9 10 u s"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q) accepted", bad)
		}
	}
}

// The meter refuses a pid it cannot read, and a server that exits during
// the measured time is reported, not fatal.
func TestCPUMeterUnreadableAndExitedPids(t *testing.T) {
	skipWithoutProc(t)
	// Above any pid_max (at most 2^22).
	if _, err := newCPUMeter([]int{os.Getpid(), 1 << 30}); err == nil || !strings.Contains(err.Error(), "no such process") {
		t.Fatalf("newCPUMeter of a missing pid: %v", err)
	}
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Skipf("cannot start sleep: %v", err)
	}
	child := sleeper.Process.Pid
	defer sleeper.Process.Kill()
	m, err := newCPUMeter([]int{os.Getpid(), child})
	if err != nil {
		t.Fatal(err)
	}
	m.begin()
	spinSink += spin(100 * time.Millisecond)
	m.sample()
	if err := sleeper.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = sleeper.Wait() // reaped: /proc/<child> is gone
	u := m.end()
	if !reflect.DeepEqual(u.exited, []int{child}) {
		t.Errorf("exited = %v, want [%d]", u.exited, child)
	}
	// This process counts both as a "server" (through /proc) and as the
	// client (getrusage).
	if u.client < 100*time.Millisecond || u.server < 50*time.Millisecond {
		t.Errorf("server %v, client %v after a 100ms busy loop", u.server, u.client)
	}
}

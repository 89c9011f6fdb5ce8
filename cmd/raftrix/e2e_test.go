package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBinaryCluster runs the real binary: three "raftrix start" processes
// with 64 ranges, driven by the CLI as a subprocess, through a kill -9 of
// one node and a SIGTERM of another.
func TestBinaryCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a 3-process cluster")
	}
	const ranges = 64
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "raftrix")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	addrs := []string{deadAddr(t), deadAddr(t), deadAddr(t)}
	var peers []string
	for i, a := range addrs {
		peers = append(peers, fmt.Sprintf("%d=%s", i+1, a))
	}
	procs := make([]*exec.Cmd, len(addrs))
	for i, a := range addrs {
		logPath := filepath.Join(dir, fmt.Sprintf("n%d.log", i+1))
		logFile, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		p := exec.Command(bin, "start", "--id", fmt.Sprint(i+1), "--listen", a, "--insecure", "--http-addr=off",
			"--data-dir", filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			"--peers", strings.Join(peers, ","), "--ranges", fmt.Sprint(ranges), "--tick", "50ms")
		p.Stderr = logFile
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		procs[i] = p
		t.Cleanup(func() {
			// Killing an exited process fails harmlessly; Wait reaps it.
			p.Process.Kill()
			p.Wait()
			logFile.Close()
			if t.Failed() {
				logs, _ := os.ReadFile(logPath)
				t.Logf("node %d log:\n%s", i+1, tail(string(logs), 30))
			}
		})
	}

	// cli runs the binary as a client and returns stdout, stderr and exit code.
	cli := func(args ...string) (string, string, int) {
		t.Helper()
		var out, errOut bytes.Buffer
		c := exec.CommandContext(ctx, bin, args...)
		c.Stdout, c.Stderr = &out, &errOut
		err := c.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return out.String(), errOut.String(), ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("raftrix %s: %v", strings.Join(args, " "), err)
		}
		return out.String(), errOut.String(), 0
	}
	mustCLI := func(args ...string) string {
		t.Helper()
		out, errOut, code := cli(args...)
		if code != 0 {
			t.Fatalf("raftrix %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		return out
	}
	// allLedBy waits until the node at addr knows a leader for every range,
	// and none of them is on a node in dead.
	allLedBy := func(addr string, dead string) {
		t.Helper()
		eventually(t, 30*time.Second, "every range on "+addr+" to have a live leader", func() bool {
			out, _, code := cli("ranges", "--endpoints", addr)
			rows := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if code != 0 || len(rows) != ranges+2 { // header, ranges, system range
				return false
			}
			for _, r := range rows[1:] {
				if l := strings.Fields(r)[4]; l == "none" || l == dead {
					return false
				}
			}
			return true
		})
	}
	for _, a := range addrs {
		allLedBy(a, "")
	}

	all := strings.Join(addrs, ",")
	// key returns a key in range i of the even split by the first byte
	// (range i starts at byte 4i). 4i+3 is never NUL (not allowed in argv),
	// tab, newline or space, so that scan's output splits cleanly.
	key := func(i int) string { return string([]byte{byte(4*i + 3)}) + fmt.Sprintf("key%02d", i) }
	// writeAll writes one key per range, each through a different first
	// endpoint so that most writes are forwarded to the range's leader.
	writeAll := func(endpoints []string, value string) {
		t.Helper()
		for i := 0; i < ranges; i++ {
			eps := strings.Join(append(endpoints[i%len(endpoints):], endpoints[:i%len(endpoints)]...), ",")
			out := mustCLI("kv", "put", key(i), fmt.Sprintf("%s%02d", value, i), "--endpoints", eps)
			if !strings.HasPrefix(out, "OK mod_revision=") {
				t.Fatalf("put printed %q", out)
			}
		}
	}
	checkScan := func(endpoints, value string) {
		t.Helper()
		out := mustCLI("kv", "scan", "--endpoints", endpoints)
		var want strings.Builder
		for i := 0; i < ranges; i++ {
			fmt.Fprintf(&want, "%s\t%s%02d\n", key(i), value, i)
		}
		if out != want.String() {
			t.Fatalf("scan printed\n%q\nwant\n%q", out, want.String())
		}
	}

	writeAll(addrs, "a")
	if out := mustCLI("kv", "get", key(10), "--endpoints", all); out != "a10\n" {
		t.Fatalf("get printed %q", out)
	}
	if _, errOut, code := cli("kv", "get", "missing", "--endpoints", all); code != exitNotFound || errOut != "Error: key \"missing\" not found\n" {
		t.Fatalf("get of a missing key: exit %d, stderr %q", code, errOut)
	}
	checkScan(all, "a")
	// Every range got exactly one key, so its size is no longer zero.
	rows := strings.Split(strings.TrimSuffix(mustCLI("ranges", "--endpoints", addrs[1]), "\n"), "\n")
	if len(rows) != ranges+2 { // header, ranges, system range
		t.Fatalf("ranges printed %d rows", len(rows))
	}
	status := strings.Split(strings.TrimSuffix(mustCLI("status", "--endpoints", all), "\n"), "\n")
	if len(status) != 4 {
		t.Fatalf("status printed %q", status)
	}
	for i, r := range status[1:] {
		if f := strings.Fields(r); f[0] != fmt.Sprint(i+1) || f[1] != addrs[i] || f[3] != fmt.Sprint(ranges+1) {
			t.Fatalf("status row %q", r)
		}
	}

	// kill -9 node 1, the first endpoint of every command below.
	if err := procs[0].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	procs[0].Wait()
	// Reads retry through the election that replaces node 1's leaders.
	if out := mustCLI("kv", "get", key(0), "--endpoints", all, "--timeout", "20s"); out != "a00\n" {
		t.Fatalf("get after kill printed %q", out)
	}
	allLedBy(addrs[1], "1")
	allLedBy(addrs[2], "1")
	// Writes fail over from the dead endpoint; every range is writable.
	writeAll(addrs, "b")
	checkScan(all, "b")
	out, errOut, code := cli("status", "--endpoints", all)
	if code != exitUnavailable || !strings.Contains(out, addrs[0]+"  unavailable") || !strings.HasPrefix(errOut, "Error: 1 of 3 endpoints did not answer") {
		t.Fatalf("status with a dead node: exit %d\n%s%s", code, out, errOut)
	}

	// SIGTERM stops a node cleanly with exit code 0.
	if err := procs[1].Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- procs[1].Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("node 2 after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("node 2 did not exit within 15s of SIGTERM")
	}
	// With two of three nodes down no range has a quorum: a write times out.
	if _, errOut, code := cli("kv", "put", key(1), "x", "--endpoints", all, "--timeout", "1s"); code != exitUnavailable {
		t.Fatalf("put without quorum: exit %d, stderr %q", code, errOut)
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer that a server command writes to while the
// test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// background runs a long-running command in-process until the returned
// stop function cancels it; stop returns its exit code.
func background(t *testing.T, stdout, stderr *syncBuffer, args ...string) (stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- execute(ctx, args, stdout, stderr) }()
	var once sync.Once
	code := -1
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(20 * time.Second):
				t.Errorf("raftrix %s did not stop within 20s", strings.Join(args, " "))
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	return stop
}

// eventually retries f until it returns true or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStartServesUntilCanceledAndKeepsData(t *testing.T) {
	addr := deadAddr(t)
	dir := filepath.Join(t.TempDir(), "n1")
	args := []string{"start", "--id=1", "--peers=1=" + addr, "--data-dir=" + dir,
		"--ranges=4", "--tick=20ms", "--log-format=json", "--insecure", "--http-addr=off"}
	var out, logs syncBuffer
	stop := background(t, &out, &logs, args...)
	eventually(t, 20*time.Second, "the node to accept a put", func() bool {
		_, _, code := runCLI(t, "kv", "put", "durable", "yes", "--endpoints="+addr, "--timeout=1s")
		return code == exitOK
	})
	if code := stop(); code != exitOK {
		t.Fatalf("start exited %d after cancel; logs:\n%s", code, logs.String())
	}
	if !strings.Contains(logs.String(), `"msg":"shutting down","node":1`) {
		t.Fatalf("no JSON shutdown log with the node attribute:\n%s", logs.String())
	}

	// The same data directory serves the acknowledged write after a restart.
	stop = background(t, &out, &logs, args...)
	eventually(t, 20*time.Second, "the restarted node to serve the key", func() bool {
		got, _, code := runCLI(t, "kv", "get", "durable", "--endpoints="+addr, "--timeout=1s")
		return code == exitOK && got == "yes\n"
	})
	if code := stop(); code != exitOK {
		t.Fatalf("restarted start exited %d", code)
	}
}

// freePorts finds n consecutive free loopback ports, for demo's --base-port.
func freePorts(t *testing.T, n int) int {
	t.Helper()
	for range 20 {
		base, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := base.Addr().(*net.TCPAddr).Port
		lis := []net.Listener{base}
		for i := 1; i < n; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+i))
			if err != nil {
				break
			}
			lis = append(lis, l)
		}
		for _, l := range lis {
			l.Close()
		}
		if len(lis) == n {
			return port
		}
	}
	t.Fatal("no consecutive free ports")
	return 0
}

func TestDemo(t *testing.T) {
	port := freePorts(t, 3)
	var out, logs syncBuffer
	stop := background(t, &out, &logs, "demo", "--ranges=4", fmt.Sprintf("--base-port=%d", port))
	eventually(t, 30*time.Second, "the demo to come up", func() bool {
		return strings.Contains(out.String(), "Press Ctrl-C to stop.")
	})
	m := regexp.MustCompile(`(?m)^data: (\S+) \(removed on exit\)$`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("demo did not say where its data is:\n%s", out.String())
	}
	eps := fmt.Sprintf("--endpoints=127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", port, port+1, port+2)
	if !strings.Contains(out.String(), "raftrix kv put hello world "+eps[:len("--endpoints")]+" "+eps[len("--endpoints="):]) {
		t.Fatalf("demo does not show how to connect:\n%s", out.String())
	}
	mustRun(t, "kv", "put", "hello", "world", eps)
	if got := mustRun(t, "kv", "get", "hello", eps); got != "world\n" {
		t.Fatalf("get printed %q", got)
	}
	if rows := strings.Count(mustRun(t, "ranges", eps), "\n"); rows != 6 {
		t.Fatalf("ranges printed %d lines, want a header, 4 ranges and the system range", rows)
	}
	if code := stop(); code != exitOK {
		t.Fatalf("demo exited %d; logs:\n%s", code, logs.String())
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Fatalf("demo left its data directory %s behind (%v)", m[1], err)
	}
}

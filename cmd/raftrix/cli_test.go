package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/raftrix/raftrixdb/internal/testcluster"
)

// runCLI runs one command line in-process and returns its output and exit
// code.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = execute(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), code
}

// mustRun runs a command line that must succeed and returns its stdout.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := runCLI(t, args...)
	if code != exitOK {
		t.Fatalf("raftrix %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
	}
	return out
}

// expectFail runs a command line that must fail with code, printing exactly
// one "Error: " line that contains want.
func expectFail(t *testing.T, code int, want string, args ...string) {
	t.Helper()
	out, errOut, got := runCLI(t, args...)
	if got != code {
		t.Fatalf("raftrix %s: exit %d, want %d (stdout %q, stderr %q)", strings.Join(args, " "), got, code, out, errOut)
	}
	if !strings.HasPrefix(errOut, "Error: ") || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("raftrix %s: stderr %q, want one line \"Error: ...%s...\"", strings.Join(args, " "), errOut, want)
	}
}

// keyInRange returns a key that the even bootstrap split puts in range i of
// n (0-based).
func keyInRange(i, n int, suffix string) string {
	v := uint32(i) * (1 << 16) / uint32(n)
	return string([]byte{byte(v >> 8), byte(v)}) + suffix
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

func TestCommandsAgainstCluster(t *testing.T) {
	const ranges = 8
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, InitialRanges: ranges})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.WaitLeaders(ctx); err != nil {
		t.Fatal(err)
	}
	all := "--endpoints=" + c.Addr(1) + "," + c.Addr(2) + "," + c.Addr(3)
	// Node 2 forwards most requests, which is the common case.
	ep := "--endpoints=" + c.Addr(2)

	t.Run("PutGetDelete", func(t *testing.T) {
		out := mustRun(t, "kv", "put", "hello", "world", ep)
		var rev1, ver int64
		if _, err := fmt.Sscanf(out, "OK mod_revision=%d version=%d\n", &rev1, &ver); err != nil || ver != 1 || rev1 <= 0 {
			t.Fatalf("put printed %q (%v)", out, err)
		}
		if out := mustRun(t, "kv", "get", "hello", ep); out != "world\n" {
			t.Fatalf("get printed %q", out)
		}
		var kv map[string]any
		if err := json.Unmarshal([]byte(mustRun(t, "kv", "get", "hello", "--json", all)), &kv); err != nil {
			t.Fatal(err)
		}
		if kv["key"] != "hello" || kv["value"] != "world" || kv["version"] != 1.0 || kv["mod_revision"] != float64(rev1) {
			t.Fatalf("get --json: %v", kv)
		}
		out = mustRun(t, "kv", "put", "hello", "again", "--prev-kv", ep)
		if !strings.Contains(out, "version=2\n") || !strings.Contains(out, "prev mod_revision=") || !strings.Contains(out, `value="world"`) {
			t.Fatalf("put --prev-kv printed %q", out)
		}
		// A stale read is served by node 3's replica as it stands, which may
		// not have applied either put yet: it may say "not found" or show an
		// older value, but it must never invent one, and it catches up.
		for deadline := time.Now().Add(10 * time.Second); ; {
			out, errOut, code := runCLI(t, "kv", "get", "hello", "--stale", "--endpoints="+c.Addr(3))
			switch {
			case code == exitOK && out == "again\n":
			case code == exitOK && out == "world\n", code == exitNotFound && strings.Contains(errOut, `key "hello" not found`):
				if time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				t.Fatalf("stale get on node 3 still printed %q (stderr %q) after 10s", out, errOut)
			default:
				t.Fatalf("stale get printed %q, exit %d, stderr %q", out, code, errOut)
			}
			break
		}
		if out := mustRun(t, "kv", "del", "hello", ep); out != "OK deleted=true\n" {
			t.Fatalf("del printed %q", out)
		}
		expectFail(t, exitNotFound, `key "hello" not found`, "kv", "get", "hello", ep)
		if out := mustRun(t, "kv", "del", "hello", ep); out != "OK deleted=false\n" {
			t.Fatalf("second del printed %q", out)
		}
	})

	t.Run("ConditionalWrites", func(t *testing.T) {
		mustRun(t, "kv", "put", "cas", "v1", "--if-absent", ep)
		expectFail(t, exitCompareFailed, "compare failed", "kv", "put", "cas", "v2", "--if-absent", ep)
		var kv struct {
			ModRevision int64 `json:"mod_revision"`
		}
		if err := json.Unmarshal([]byte(mustRun(t, "kv", "get", "cas", "--json", ep)), &kv); err != nil {
			t.Fatal(err)
		}
		expectFail(t, exitCompareFailed, "compare failed", "kv", "put", "cas", "v2", fmt.Sprintf("--expect-mod-rev=%d", kv.ModRevision+1), ep)
		expectFail(t, exitCompareFailed, "compare failed", "kv", "put", "cas", "v2", "--expect-value=nope", ep)
		expectFail(t, exitCompareFailed, "compare failed", "kv", "del", "cas", fmt.Sprintf("--expect-mod-rev=%d", kv.ModRevision+1), ep)
		mustRun(t, "kv", "put", "cas", "v2", fmt.Sprintf("--expect-mod-rev=%d", kv.ModRevision), "--expect-value=v1", ep)
		if out := mustRun(t, "kv", "get", "cas", ep); out != "v2\n" {
			t.Fatalf("after compare-and-set, get printed %q", out)
		}
	})

	t.Run("InvalidArgument", func(t *testing.T) {
		expectFail(t, exitUsage, "key must not be empty", "kv", "put", "", "v", ep)
		expectFail(t, exitUsage, "key must not be empty", "kv", "get", "", ep)
		expectFail(t, exitUsage, "if_absent and expected_value", "kv", "put", "k", "v", "--if-absent", "--expect-value=x", ep)
		expectFail(t, exitUsage, "must sort before end", "kv", "scan", "b", "a", ep)
	})

	t.Run("ScanAcrossRanges", func(t *testing.T) {
		var want []string
		for i := 0; i < ranges; i++ {
			key := keyInRange(i, ranges, "scan")
			mustRun(t, "kv", "put", key, fmt.Sprint("v", i), all)
			want = append(want, key+"\t"+fmt.Sprint("v", i))
		}
		// Other subtests write keys too: keep only this one's.
		lines := func(s string) []string {
			var out []string
			for _, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
				if strings.Contains(l, "scan") {
					out = append(out, l)
				}
			}
			return out
		}
		got := lines(mustRun(t, "kv", "scan", ep))
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("scan printed %q, want %q", got, want)
		}
		// Small pages make the command follow continuation tokens.
		got = lines(mustRun(t, "kv", "scan", "--page-size=3", all))
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("paged scan printed %q, want %q", got, want)
		}
		// Only binary keys sort from range 4 on (the other subtests write ASCII).
		got = lines(mustRun(t, "kv", "scan", keyInRange(4, ranges, ""), "--page-size=2", "--limit=3", "--keys-only", ep))
		if len(got) != 3 || got[0] != keyInRange(4, ranges, "scan") || got[2] != keyInRange(6, ranges, "scan") {
			t.Fatalf("scan --limit 3 --keys-only printed %q", got)
		}
		got = lines(mustRun(t, "kv", "scan", keyInRange(2, ranges, ""), keyInRange(4, ranges, ""), "--json", ep))
		if len(got) != 2 || !strings.Contains(got[0], `"value":"v2"`) || !strings.Contains(got[1], `"value":"v3"`) {
			t.Fatalf("scan [2,4) --json printed %q", got)
		}
	})

	t.Run("Ranges", func(t *testing.T) {
		lines := strings.Split(strings.TrimSuffix(mustRun(t, "ranges", ep), "\n"), "\n")
		if len(lines) != ranges+2 || !strings.HasPrefix(lines[0], "RANGE") { // + the system range
			t.Fatalf("ranges printed %q", lines)
		}
		for i, l := range lines[1:] {
			f := strings.Fields(l)
			if f[0] != fmt.Sprint(i+1) || f[3] != "1,2,3" || f[4] == "none" {
				t.Fatalf("range row %q", l)
			}
		}
		if !strings.HasPrefix(strings.Fields(lines[1])[1], "<min>") || strings.Fields(lines[ranges+1])[2] != "<max>" {
			t.Fatalf("ranges do not span the key space: %q", lines)
		}
	})

	t.Run("Status", func(t *testing.T) {
		lines := strings.Split(strings.TrimSuffix(mustRun(t, "status", all), "\n"), "\n")
		if len(lines) != 4 {
			t.Fatalf("status printed %q", lines)
		}
		for i, l := range lines[1:] {
			f := strings.Fields(l)
			if f[0] != fmt.Sprint(i+1) || f[1] != c.Addr(uint64(i+1)) || f[3] != fmt.Sprint(ranges+1) {
				t.Fatalf("status row %q", l)
			}
		}
		dead := deadAddr(t)
		expectFail(t, exitUnavailable, "1 of 2 endpoints did not answer: "+dead, "status", ep+","+dead)
	})

	t.Run("Failover", func(t *testing.T) {
		dead := deadAddr(t)
		mustRun(t, "kv", "put", "fo", "1", "--endpoints="+dead+","+c.Addr(1))
		if out := mustRun(t, "kv", "get", "fo", "--endpoints="+dead+","+c.Addr(3)); out != "1\n" {
			t.Fatalf("get printed %q", out)
		}
		expectFail(t, exitUnavailable, "cannot connect to any endpoint", "kv", "put", "fo", "2", "--endpoints="+dead)
	})
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	peers := "--peers=1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3"
	for _, tc := range []struct {
		want string
		args []string
	}{
		{"unknown command", []string{"frobnicate"}},
		{"unknown flag: --bogus", []string{"kv", "get", "k", "--bogus"}},
		{"accepts 2 arg(s), received 1", []string{"kv", "put", "k"}},
		{"accepts at most 2 arg(s)", []string{"kv", "scan", "a", "b", "c"}},
		{`invalid argument "x" for "--expect-mod-rev"`, []string{"kv", "put", "k", "v", "--expect-mod-rev=x"}},
		{"--limit must not be negative", []string{"kv", "scan", "--limit=-1"}},
		{`invalid endpoint "nope"`, []string{"kv", "get", "k", "--endpoints=nope"}},
		{`required flag(s) "data-dir" not set`, []string{"start", peers}},
		{`at least one of the flags in the group [join id] is required`, []string{"start", peers, "--data-dir=/nonexistent"}},
		{`--join needs --listen`, []string{"start", "--join=127.0.0.1:1", "--data-dir=/nonexistent", "--insecure"}},
		{"--id 4 is not in --peers (which has node IDs 1,2,3)", []string{"start", "--id=4", "--data-dir=" + dir, peers}},
		{"--peers lists node 1 twice", []string{"start", "--id=1", "--data-dir=" + dir, "--peers=1=127.0.0.1:1,1=127.0.0.1:2"}},
		{`invalid --peers entry "x=127.0.0.1:1"`, []string{"start", "--id=1", "--data-dir=" + dir, "--peers=x=127.0.0.1:1"}},
		{`invalid --peers entry "1=localhost"`, []string{"start", "--id=1", "--data-dir=" + dir, "--peers=1=localhost"}},
		{"[ranges split-keys] were all set", []string{"start", "--id=1", "--data-dir=" + dir, peers, "--ranges=4", "--split-keys=a"}},
		{"split keys must be strictly increasing", []string{"start", "--id=1", "--data-dir=" + dir, peers, "--split-keys=m,a"}},
		{"initial range count must be in [1, 65536], got 0", []string{"start", "--id=1", "--data-dir=" + dir, peers, "--ranges=0"}},
		{`invalid --log-format "xml"`, []string{"start", "--id=1", "--data-dir=" + dir, peers, "--log-format=xml"}},
		{"--nodes must be in [1, 100]", []string{"demo", "--nodes=0"}},
	} {
		expectFail(t, exitUsage, tc.want, tc.args...)
	}
}

func TestHelpListsExitCodes(t *testing.T) {
	out := mustRun(t, "--help")
	for _, want := range []string{"Exit codes:", "3  key not found", "4  compare failed", "5  cluster unavailable"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q:\n%s", want, out)
		}
	}
}

func TestRangeSplitCommand(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, InitialRanges: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.WaitLeaders(ctx); err != nil {
		t.Fatal(err)
	}
	ep := "--endpoints=" + c.Addr(1)
	var out, errOut bytes.Buffer
	code := execute(ctx, []string{"range", "split", "m", ep}, &out, &errOut)
	if code != 0 || !strings.Contains(out.String(), "left  range 1 [<min>, m)") || !strings.Contains(out.String(), "[m, ") {
		t.Fatalf("split: exit %d, out %q, err %q", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := execute(ctx, []string{"range", "split", "m", ep}, &out, &errOut); code != 2 {
		t.Fatalf("split at a boundary: exit %d, err %q", code, errOut.String())
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/raftrix/raftrixdb/internal/testcluster"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

func txnCmp(key string, target pb.Compare_Target, result pb.Compare_Result, v any) *pb.Compare {
	c := &pb.Compare{Key: []byte(key), Target: target, Result: result}
	switch target {
	case pb.Compare_VALUE:
		c.Value = []byte(v.(string))
	case pb.Compare_VERSION:
		c.Version = int64(v.(int))
	case pb.Compare_CREATE_REVISION:
		c.CreateRevision = int64(v.(int))
	case pb.Compare_MOD_REVISION:
		c.ModRevision = int64(v.(int))
	}
	return c
}

func txnGet(key string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_Get{Get: &pb.GetRequest{Key: []byte(key)}}}
}

func txnPut(key, value string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_Put{Put: &pb.PutRequest{Key: []byte(key), Value: []byte(value)}}}
}

func txnDel(key string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_Delete{Delete: &pb.DeleteRequest{Key: []byte(key)}}}
}

func txnOps(o ...*pb.RequestOp) []*pb.RequestOp { return o }

func TestParseTxn(t *testing.T) {
	const (
		val     = pb.Compare_VALUE
		ver     = pb.Compare_VERSION
		create  = pb.Compare_CREATE_REVISION
		mod     = pb.Compare_MOD_REVISION
		eq      = pb.Compare_EQUAL
		ne      = pb.Compare_NOT_EQUAL
		less    = pb.Compare_LESS
		greater = pb.Compare_GREATER
	)
	for _, tc := range []struct {
		name string
		in   string
		want *pb.TxnRequest
	}{
		{
			name: "etcdctl example",
			in: `mod("key1") > "0"
val("key2") = "v"

put key1 "overwrote-key1"
get key2

put key1 "created-key1"
del key2
`,
			want: &pb.TxnRequest{
				Compare: []*pb.Compare{txnCmp("key1", mod, greater, 0), txnCmp("key2", val, eq, "v")},
				Success: txnOps(txnPut("key1", "overwrote-key1"), txnGet("key2")),
				Failure: txnOps(txnPut("key1", "created-key1"), txnDel("key2")),
			},
		},
		{
			name: "every target, operator and alias",
			in: `ver("a") = "0"
version("a") != "1"
create("a") < "5"
c("a") > "6"
mod("a") = "7"
m("a") != "8"
val("a") < "x"
value("a") > "y"
`,
			want: &pb.TxnRequest{Compare: []*pb.Compare{
				txnCmp("a", ver, eq, 0), txnCmp("a", ver, ne, 1), txnCmp("a", create, less, 5), txnCmp("a", create, greater, 6),
				txnCmp("a", mod, eq, 7), txnCmp("a", mod, ne, 8), txnCmp("a", val, less, "x"), txnCmp("a", val, greater, "y"),
			}},
		},
		{
			name: "spacing and bare values",
			in:   "mod ( \"a\" )>\"3\"\nver(\"b\")=0\nval(\"c\")\t!=  word\n",
			want: &pb.TxnRequest{Compare: []*pb.Compare{txnCmp("a", mod, greater, 3), txnCmp("b", ver, eq, 0), txnCmp("c", val, ne, "word")}},
		},
		{
			name: "escapes, empty values",
			in: `val("\x00\n\"") = "\u00e9"

put "a b" "\t"
put k ""
put a\b c
delete "\xff"
`,
			want: &pb.TxnRequest{
				Compare: []*pb.Compare{txnCmp("\x00\n\"", val, eq, "é")},
				Success: txnOps(txnPut("a b", "\t"), txnPut("k", ""), txnPut(`a\b`, "c"), txnDel("\xff")),
			},
		},
		{
			name: "compares only, no trailing newline",
			in:   `ver("a") = "0"`,
			want: &pb.TxnRequest{Compare: []*pb.Compare{txnCmp("a", ver, eq, 0)}},
		},
		{
			name: "no compares",
			in:   "\nput a 1\n",
			want: &pb.TxnRequest{Success: txnOps(txnPut("a", "1"))},
		},
		{
			name: "failure operations only",
			in:   "ver(\"a\") = \"0\"\n\n\nget a\n",
			want: &pb.TxnRequest{Compare: []*pb.Compare{txnCmp("a", ver, eq, 0)}, Failure: txnOps(txnGet("a"))},
		},
		{
			name: "comments, CRLF, blank lines of spaces, trailing empty lines",
			in:   "# a comment\r\nver(\"a\") = \"0\"\r\n  \t \r\n  # another\r\nput a 1\r\n\r\n get a \r\n\r\n\r\n\r\n",
			want: &pb.TxnRequest{Compare: []*pb.Compare{txnCmp("a", ver, eq, 0)}, Success: txnOps(txnPut("a", "1")), Failure: txnOps(txnGet("a"))},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseTxn(strings.NewReader(tc.in), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tc.want) {
				t.Fatalf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestParseTxnErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "empty transaction: no compares and no operations were read"},
		{"\n\n\n# nothing\n", "empty transaction: no compares and no operations were read"},
		// Compares.
		{"put a b\n", `line 1: expected a compare like mod("key") = "5", got "put a b" (operations go after the compares and an empty line)`},
		{"# c\nfoo\n", `line 2: expected a compare like mod("key") = "5", got "foo"`},
		{`lease("a") = "1"`, `line 1: unknown compare target "lease"; expected val, ver, create or mod`},
		{`mod(a) = "1"`, `line 1: expected a double-quoted key after mod(, got "a) = \"1\""`},
		{`mod("a = 1`, `line 1: unterminated quoted string "a = 1`},
		{`mod("a\") = 1`, `line 1: unterminated quoted string "a\") = 1`},
		{`mod("\q") = "1"`, `line 1: invalid escape in quoted string "\q"`},
		{`mod("") = "1"`, `line 1: key must not be empty`},
		{`mod("a" = "1"`, `line 1: expected ")" after the key, got "= \"1\""`},
		{`mod("a") "1"`, `line 1: expected =, !=, < or > after mod("a"), got "\"1\""`},
		{`mod("a") >= "1"`, `line 1: unknown operator ">="; expected =, !=, < or >`},
		{`mod("a") == "1"`, `line 1: unknown operator "=="; expected =, !=, < or >`},
		{`mod("a") =`, `line 1: expected a value after "="`},
		{`mod("a") = "1" "2"`, `line 1: unexpected "\"2\"" after the compare's value`},
		{`mod("a") = "1"x`, `line 1: expected a space after "1", got "x"`},
		{`mod("a") = "x"`, `line 1: mod compares with a non-negative integer, got "x"`},
		{`ver("a") > "-1"`, `line 1: ver compares with a non-negative integer, got "-1"`},
		{`create("a") > "99999999999999999999"`, `line 1: create compares with a non-negative integer, got "99999999999999999999"`},
		{`val("a") = b"c"`, `line 1: unexpected quote in b"c"; quote whole words, like "a b"`},
		// Operations, with the line numbers of later sections.
		{"ver(\"a\") = \"0\"\n\nput a\n", `line 3: expected "put KEY VALUE", got 1 argument`},
		{"\nput a b c\n", `line 2: expected "put KEY VALUE", got 3 arguments`},
		{"\nget a b\n", `line 2: expected "get KEY", got 2 arguments`},
		{"\n\ndel\n", `line 3: expected "del KEY", got 0 arguments`},
		{"\nset a b\n", `line 2: expected get, put or del, got "set"`},
		{"\nmod(\"a\") = \"1\"\n", `line 2: expected get, put or del, got "mod(\"a\")" (compares go before the first empty line)`},
		{"\nput \"a b c\n", `line 2: unterminated quoted string "a b c`},
		{"\nput a\"b c\n", `line 2: unexpected quote in a"b; quote whole words, like "a b"`},
		{"\nput \"a\"b c\n", `line 2: expected a space after "a", got "b c"`},
		{"\nput a\\b c\"d\"\n", `line 2: unexpected quote in c"d"; quote whole words, like "a b"`},
		{"\nget \"\"\n", `line 2: key must not be empty`},
		{"\nget a\n\nget a\n\nget b\n", `line 6: expected nothing after the failure operations, got "get b" (each empty line ends a section: compares, success, failure)`},
	} {
		_, err := parseTxn(strings.NewReader(tc.in), nil)
		if err == nil || err.Error() != tc.want {
			t.Errorf("parsing %q:\n got error %v\nwant error %s", tc.in, err, tc.want)
			continue
		}
		if code := exitCode(err); code != exitUsage {
			t.Errorf("parsing %q: exit code %d, want %d", tc.in, code, exitUsage)
		}
	}
}

// TestParseTxnInteractive checks that each section is prompted for before it
// is read, and that reading stops at the empty line ending the failure
// section (a person typing has no end of input to give).
func TestParseTxnInteractive(t *testing.T) {
	r := &linesReader{lines: []string{"ver(\"a\") = \"0\"\n", "\n", "put a 1\n", "\n", "get a\n", "\n"}}
	var events []string
	r.onRead = func(line string) { events = append(events, "read "+strings.TrimSpace(line)) }
	req, err := parseTxn(r, func(p string) { events = append(events, p) })
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		txnPrompts[0], `read ver("a") = "0"`, "read ",
		txnPrompts[1], "read put a 1", "read ",
		txnPrompts[2], "read get a", "read ",
	}
	if strings.Join(events, "|") != strings.Join(want, "|") {
		t.Fatalf("events %q\nwant   %q", events, want)
	}
	if len(req.Compare) != 1 || len(req.Success) != 1 || len(req.Failure) != 1 {
		t.Fatalf("parsed %v", req)
	}
}

// linesReader gives one line per Read, then blocks the test by failing: an
// interactive parse must not read past the last empty line.
type linesReader struct {
	lines  []string
	onRead func(string)
}

func (r *linesReader) Read(p []byte) (int, error) {
	if len(r.lines) == 0 {
		return 0, errors.New("read past the end of the transaction")
	}
	line := r.lines[0]
	r.lines = r.lines[1:]
	r.onRead(line)
	return copy(p, line), nil
}

// runCLIIn runs one command line in-process with stdin as its input.
func runCLIIn(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = executeIn(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), code
}

// The keys of TestTxnCommand, in ranges 1, 4, 7 and 5 of 8.
const (
	txnKeyA       = "\x20\x00txn-a"
	txnKeyB       = "\x80\x00txn-b"
	txnKeyC       = "\xe0\x00txn-c"
	txnKeyMissing = "\xa0\x00txn-missing"
)

// txnText writes A, B and C if A and C are absent and B is "old", reading
// A back and a key that does not exist; otherwise it reads A and B.
const txnText = `# one key in each of three ranges
ver("\x20\x00txn-a") = "0"
val("\x80\x00txn-b") = "old"
ver("\xe0\x00txn-c") = "0"

put "\x20\x00txn-a" 1
put "\x80\x00txn-b" 2
put "\xe0\x00txn-c" "three\tfour"
get "\x20\x00txn-a"
get "\xa0\x00txn-missing"

get "\x20\x00txn-a"
get "\x80\x00txn-b"
`

func TestTxnCommand(t *testing.T) {
	const ranges = 8
	for i, k := range map[int]string{1: txnKeyA, 4: txnKeyB, 7: txnKeyC, 5: txnKeyMissing} {
		if want := keyInRange(i, ranges, ""); !strings.HasPrefix(k, want) || (i < ranges-1 && k >= keyInRange(i+1, ranges, "")) {
			t.Fatalf("key %q is not in range %d of %d", k, i, ranges)
		}
	}
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, InitialRanges: ranges})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.WaitLeaders(ctx); err != nil {
		t.Fatal(err)
	}
	ep := "--endpoints=" + c.Addr(2)
	mustRun(t, "kv", "put", txnKeyB, "old", ep)

	// From stdin: the compares hold, every write shares one revision.
	out, errOut, code := runCLIIn(t, txnText, "kv", "txn", ep)
	if code != exitOK || errOut != "" {
		t.Fatalf("txn: exit %d, stderr %q", code, errOut)
	}
	var rev int64
	if _, err := fmt.Sscanf(out, "SUCCESS\nrevision=%d\n", &rev); err != nil || rev <= 0 {
		t.Fatalf("txn printed %q (%v)", out, err)
	}
	want := fmt.Sprintf("SUCCESS\nrevision=%[1]d\n"+
		"OK mod_revision=%[1]d version=1\nOK mod_revision=%[1]d version=2\nOK mod_revision=%[1]d version=1\n"+
		"%[2]s\t1\n%[3]s (not found)\n", rev, txnKeyA, txnKeyMissing)
	if out != want {
		t.Fatalf("txn printed\n%q, want\n%q", out, want)
	}
	for i, kv := range [][2]string{{txnKeyA, "1"}, {txnKeyB, "2"}, {txnKeyC, "three\tfour"}} {
		if got := mustRun(t, "kv", "get", kv[0], "--endpoints="+c.Addr(uint64(i+1))); got != kv[1]+"\n" {
			t.Fatalf("get %q after the txn printed %q", kv[0], got)
		}
	}

	// The same transaction again, from a file: the compares fail, the
	// failure branch runs and writes nothing, and that is exit code 0.
	file := filepath.Join(t.TempDir(), "txn")
	if err := os.WriteFile(file, []byte(txnText), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := mustRun(t, "kv", "txn", "--file", file, "--endpoints="+c.Addr(3)), "FAILURE\n"+txnKeyA+"\t1\n"+txnKeyB+"\t2\n"; got != want {
		t.Fatalf("second txn printed %q, want %q", got, want)
	}
	var kv struct {
		ModRevision int64 `json:"mod_revision"`
		Version     int64 `json:"version"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "kv", "get", txnKeyB, "--json", ep)), &kv); err != nil {
		t.Fatal(err)
	}
	if kv.ModRevision != rev || kv.Version != 2 {
		t.Fatalf("after the failed txn, B has mod revision %d, version %d; want %d, 2", kv.ModRevision, kv.Version, rev)
	}

	// --json, with a delete and a key that is not UTF-8 (base64).
	in := fmt.Sprintf("mod(%q) = \"%d\"\n\ndel %q\nget %q\nput %q 3\n", txnKeyA, rev, txnKeyA, txnKeyA, txnKeyB)
	out, errOut, code = runCLIIn(t, in, "kv", "txn", "--json", ep)
	if code != exitOK {
		t.Fatalf("txn --json: exit %d, stderr %q", code, errOut)
	}
	var j struct {
		Succeeded bool
		Revision  int64
		Responses []map[string]any
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("txn --json printed %q (%v)", out, err)
	}
	r := j.Responses
	putKV, _ := r[len(r)-1]["kv"].(map[string]any)
	if !j.Succeeded || j.Revision <= rev || len(r) != 3 ||
		r[0]["op"] != "del" || r[0]["key"] != txnKeyA || r[0]["deleted"] != true ||
		r[1]["op"] != "get" || r[1]["key"] != txnKeyA || r[1]["found"] != false || r[1]["kv"] != nil ||
		r[2]["op"] != "put" || r[2]["key_base64"] == nil || putKV["version"] != 3.0 || putKV["value"] != nil {
		t.Fatalf("txn --json printed %s", out)
	}
	expectFail(t, exitNotFound, "not found", "kv", "get", txnKeyA, ep)

	// --interactive prompts on stderr and needs no end of input.
	out, errOut, code = runCLIIn(t, "ver(\"nope\") = \"0\"\n\nget nope\n\n", "kv", "txn", "-i", ep)
	if code != exitOK || out != "SUCCESS\nnope (not found)\n" || errOut != strings.Join(txnPrompts[:], "\n")+"\n" {
		t.Fatalf("txn -i: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// Errors: the parser's and the server's both exit 2, before anything is
	// written.
	for _, tc := range []struct{ in, want string }{
		{"ver(\"a\") = 0\n\nput a\n", `Error: line 3: expected "put KEY VALUE", got 1 argument` + "\n"},
		{"\nput k 1\nput k 2\n", `Error: success branch writes key "k" twice` + "\n"},
	} {
		out, errOut, code := runCLIIn(t, tc.in, "kv", "txn", ep)
		if code != exitUsage || out != "" || errOut != tc.want {
			t.Errorf("txn %q: exit %d, stdout %q, stderr %q; want exit 2, stderr %q", tc.in, code, out, errOut, tc.want)
		}
	}
	expectFail(t, exitNotFound, "not found", "kv", "get", "k", ep)
	expectFail(t, exitUsage, "cannot read --file: open /nonexistent/txn", "kv", "txn", "--file=/nonexistent/txn", ep)
	expectFail(t, exitUsage, `unknown command "x" for "raftrix kv txn"`, "kv", "txn", "x", ep)
}

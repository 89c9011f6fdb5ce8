package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

func newTxnCmd(cf *clientFlags) *cobra.Command {
	var (
		file        string
		interactive bool
		asJSON      bool
	)
	cmd := &cobra.Command{
		Use:   "txn",
		Short: "Run a transaction read from standard input, as etcdctl txn does",
		Long: `Run a transaction read from standard input (or --file), written as for
etcdctl txn: compares, an empty line, the success operations, an empty line,
the failure operations. Each empty line ends a section, so any section may be
empty and the last ones may be left out. Lines starting with # are comments.

  mod("counter") = "7"
  ver("lock") = "0"

  put counter 8
  put lock "held by \"me\""
  get config

  get counter

A compare is TARGET("KEY") OP VALUE. TARGET is val, ver, create or mod (the
value, version, create revision or mod revision; value, version, c and m are
accepted too) and OP is =, !=, < or >. A missing key has version and
revisions 0, so ver("k") = "0" means "k is absent"; a val compare on a
missing key is false. An operation is get KEY, put KEY VALUE or del KEY.
Keys and values are double-quoted Go strings ("a b", "\x00\n") or bare words;
keys in compares are always quoted.

If every compare holds the success operations run, otherwise the failure
operations, atomically even across ranges. The output is SUCCESS or FAILURE,
then revision=N if the transaction wrote, then a line per operation:
"KEY<TAB>VALUE" or "KEY (not found)" for a get, "OK mod_revision=N version=V"
for a put, "OK deleted=true|false" for a del. Running the failure operations
is not an error: the exit code is 0 either way. A syntax error exits with
code 2, naming the line.

A transaction is a write: it is retried only when it surely was not applied.`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			in := cmd.InOrStdin()
			if file != "" && file != "-" {
				if interactive {
					return usagef("--interactive prompts for the transaction; it cannot be used with --file")
				}
				f, err := os.Open(file)
				if err != nil {
					return usagef("cannot read --file: %v", err)
				}
				defer f.Close()
				in = f
			}
			var prompt func(string)
			if interactive {
				prompt = func(p string) { fmt.Fprintln(cmd.ErrOrStderr(), p) }
			}
			req, err := parseTxn(in, prompt)
			if err != nil {
				return err
			}
			var resp *pb.TxnResponse
			err = withClient(cmd, cf, write, func(ctx context.Context, conn *grpc.ClientConn) (err error) {
				resp, err = pb.NewKVClient(conn).Txn(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONLine(cmd.OutOrStdout(), newJSONTxn(req, resp))
			}
			return printTxn(cmd.OutOrStdout(), req, resp)
		}),
	}
	fs := cmd.Flags()
	fs.StringVar(&file, "file", "", "read the transaction from file F (\"-\": standard input)")
	fs.BoolVarP(&interactive, "interactive", "i", false, "prompt for each section on stderr, and stop reading at the empty line ending the failure operations")
	fs.BoolVar(&asJSON, "json", false, "print the response as one JSON object")
	return cmd
}

// txnPrompts are the --interactive prompts, etcdctl's, one per section.
var txnPrompts = [...]string{"compares:", "success requests (get, put, del):", "failure requests (get, put, del):"}

// parseTxn reads a transaction in etcdctl's text form. Errors in the text are
// usageErrors naming the line. When prompt is not nil it is called before
// each section, and reading stops at the empty line that ends the failure
// section instead of at the end of the input, as a person typing expects.
func parseTxn(r io.Reader, prompt func(string)) (*pb.TxnRequest, error) {
	br := bufio.NewReader(r)
	req := &pb.TxnRequest{}
	section := 0 // compares, success, failure, then 3: past the end
	if prompt != nil {
		prompt(txnPrompts[0])
	}
	for n := 1; ; n++ {
		text, readErr := br.ReadString('\n')
		if readErr != nil && readErr != io.EOF {
			return nil, fmt.Errorf("reading the transaction: %w", readErr)
		}
		if readErr == io.EOF && text == "" {
			break
		}
		line := strings.TrimSpace(text)
		var err error
		switch {
		case line == "":
			if section == len(txnPrompts) {
				continue // trailing empty lines
			}
			section++
			if prompt != nil {
				if section == len(txnPrompts) {
					return checkTxn(req)
				}
				prompt(txnPrompts[section])
			}
		case line[0] == '#':
		case section == 0:
			var c *pb.Compare
			if c, err = parseCompare(line); err == nil {
				req.Compare = append(req.Compare, c)
			}
		case section == 1:
			var op *pb.RequestOp
			if op, err = parseOp(line); err == nil {
				req.Success = append(req.Success, op)
			}
		case section == 2:
			var op *pb.RequestOp
			if op, err = parseOp(line); err == nil {
				req.Failure = append(req.Failure, op)
			}
		default:
			err = fmt.Errorf("expected nothing after the failure operations, got %q (each empty line ends a section: compares, success, failure)", line)
		}
		if err != nil {
			return nil, usagef("line %d: %v", n, err)
		}
		if readErr == io.EOF {
			break
		}
	}
	return checkTxn(req)
}

func checkTxn(req *pb.TxnRequest) (*pb.TxnRequest, error) {
	if len(req.Compare)+len(req.Success)+len(req.Failure) == 0 {
		return nil, usagef("empty transaction: no compares and no operations were read")
	}
	return req, nil
}

var (
	compareTargets = map[string]pb.Compare_Target{
		"val": pb.Compare_VALUE, "value": pb.Compare_VALUE,
		"ver": pb.Compare_VERSION, "version": pb.Compare_VERSION,
		"create": pb.Compare_CREATE_REVISION, "c": pb.Compare_CREATE_REVISION,
		"mod": pb.Compare_MOD_REVISION, "m": pb.Compare_MOD_REVISION,
	}
	compareResults = map[string]pb.Compare_Result{
		"=": pb.Compare_EQUAL, "!=": pb.Compare_NOT_EQUAL, "<": pb.Compare_LESS, ">": pb.Compare_GREATER,
	}
)

// parseCompare parses one compare line, such as mod("key") = "5".
func parseCompare(s string) (*pb.Compare, error) {
	if first, _ := cutWord(s); isOpName(first) {
		return nil, fmt.Errorf(`expected a compare like mod("key") = "5", got %q (operations go after the compares and an empty line)`, s)
	}
	name, rest, ok := strings.Cut(s, "(")
	if !ok {
		return nil, fmt.Errorf(`expected a compare like mod("key") = "5", got %q`, s)
	}
	name = strings.TrimSpace(name)
	target, ok := compareTargets[name]
	if !ok {
		return nil, fmt.Errorf("unknown compare target %q; expected val, ver, create or mod", name)
	}
	rest = trimSpaceLeft(rest)
	if !strings.HasPrefix(rest, `"`) {
		return nil, fmt.Errorf("expected a double-quoted key after %s(, got %q", name, rest)
	}
	key, rest, err := unquotePrefix(rest)
	if err != nil {
		return nil, err
	}
	if key == "" {
		return nil, errors.New("key must not be empty")
	}
	rest = trimSpaceLeft(rest)
	if !strings.HasPrefix(rest, ")") {
		return nil, fmt.Errorf(`expected ")" after the key, got %q`, rest)
	}
	rest = trimSpaceLeft(rest[1:])
	end := 0
	for end < len(rest) && strings.IndexByte("=!<>", rest[end]) >= 0 {
		end++
	}
	op := rest[:end]
	result, ok := compareResults[op]
	switch {
	case op == "":
		return nil, fmt.Errorf("expected =, !=, < or > after %s(%q), got %q", name, key, rest)
	case !ok:
		return nil, fmt.Errorf("unknown operator %q; expected =, !=, < or >", op)
	}
	rest = trimSpaceLeft(rest[end:])
	if rest == "" {
		return nil, fmt.Errorf("expected a value after %q", op)
	}
	val, rest, err := cutToken(rest)
	if err != nil {
		return nil, err
	}
	if rest != "" {
		return nil, fmt.Errorf("unexpected %q after the compare's value", rest)
	}
	c := &pb.Compare{Key: []byte(key), Target: target, Result: result}
	if target == pb.Compare_VALUE {
		c.Value = []byte(val)
		return c, nil
	}
	v, err := strconv.ParseInt(val, 10, 64)
	if err != nil || v < 0 {
		return nil, fmt.Errorf("%s compares with a non-negative integer, got %q", name, val)
	}
	switch target {
	case pb.Compare_VERSION:
		c.Version = v
	case pb.Compare_CREATE_REVISION:
		c.CreateRevision = v
	case pb.Compare_MOD_REVISION:
		c.ModRevision = v
	}
	return c, nil
}

func isOpName(s string) bool {
	switch s {
	case "get", "put", "del", "delete":
		return true
	}
	return false
}

// parseOp parses one operation line: get KEY, put KEY VALUE or del KEY.
func parseOp(s string) (*pb.RequestOp, error) {
	name, rest := cutWord(s)
	want, nargs := name+" KEY", 1
	switch name {
	case "get", "del", "delete":
	case "put":
		want, nargs = "put KEY VALUE", 2
	default:
		hint := ""
		if strings.Contains(name, "(") {
			hint = " (compares go before the first empty line)"
		}
		return nil, fmt.Errorf("expected get, put or del, got %q%s", name, hint)
	}
	var args []string
	for rest != "" {
		tok, r, err := cutToken(rest)
		if err != nil {
			return nil, err
		}
		args, rest = append(args, tok), r
	}
	if len(args) != nargs {
		return nil, fmt.Errorf("expected %q, got %d argument%s", want, len(args), plural(len(args)))
	}
	key := []byte(args[0])
	if len(key) == 0 {
		return nil, errors.New("key must not be empty")
	}
	switch name {
	case "get":
		return &pb.RequestOp{Request: &pb.RequestOp_Get{Get: &pb.GetRequest{Key: key}}}, nil
	case "put":
		return &pb.RequestOp{Request: &pb.RequestOp_Put{Put: &pb.PutRequest{Key: key, Value: []byte(args[1])}}}, nil
	}
	return &pb.RequestOp{Request: &pb.RequestOp_Delete{Delete: &pb.DeleteRequest{Key: key}}}, nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// cutWord splits s, which starts with no space, at its first space.
func cutWord(s string) (word, rest string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], trimSpaceLeft(s[i:])
}

// cutToken splits the first token off s, which starts with no space: a
// double-quoted Go string, or a bare word running to the next space.
func cutToken(s string) (tok, rest string, err error) {
	if s[0] != '"' {
		word, rest := cutWord(s)
		if strings.Contains(word, `"`) {
			return "", "", fmt.Errorf(`unexpected quote in %s; quote whole words, like "a b"`, word)
		}
		return word, rest, nil
	}
	tok, rest, err = unquotePrefix(s)
	if err != nil {
		return "", "", err
	}
	if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
		return "", "", fmt.Errorf("expected a space after %s, got %q", s[:len(s)-len(rest)], rest)
	}
	return tok, trimSpaceLeft(rest), nil
}

// unquotePrefix unquotes the double-quoted Go string that s starts with.
func unquotePrefix(s string) (val, rest string, err error) {
	end := -1
	for i := 1; i < len(s); i++ {
		if s[i] == '\\' {
			i++
		} else if s[i] == '"' {
			end = i + 1
			break
		}
	}
	if end < 0 {
		return "", "", fmt.Errorf("unterminated quoted string %s", s)
	}
	val, err = strconv.Unquote(s[:end])
	if err != nil {
		return "", "", fmt.Errorf("invalid escape in quoted string %s", s[:end])
	}
	return val, s[end:], nil
}

func trimSpaceLeft(s string) string { return strings.TrimLeft(s, " \t") }

// branch returns the operations of the branch that ran, which the responses
// answer one for one.
func branch(req *pb.TxnRequest, resp *pb.TxnResponse) []*pb.RequestOp {
	if resp.GetSucceeded() {
		return req.GetSuccess()
	}
	return req.GetFailure()
}

// opKey is the key of the i-th operation of the branch that ran: a get of a
// missing key answers without one.
func opKey(ops []*pb.RequestOp, i int) []byte {
	if i >= len(ops) {
		return nil
	}
	switch r := ops[i].Request.(type) {
	case *pb.RequestOp_Get:
		return r.Get.GetKey()
	case *pb.RequestOp_Put:
		return r.Put.GetKey()
	case *pb.RequestOp_Delete:
		return r.Delete.GetKey()
	}
	return nil
}

// printTxn prints a transaction's outcome and responses, a line each.
func printTxn(w io.Writer, req *pb.TxnRequest, resp *pb.TxnResponse) error {
	out := bufio.NewWriter(w)
	if resp.GetSucceeded() {
		fmt.Fprintln(out, "SUCCESS")
	} else {
		fmt.Fprintln(out, "FAILURE")
	}
	if resp.GetRevision() != 0 {
		fmt.Fprintf(out, "revision=%d\n", resp.GetRevision())
	}
	branchOps := branch(req, resp)
	for i, r := range resp.GetResponses() {
		switch r := r.Response.(type) {
		case *pb.ResponseOp_Get:
			if r.Get.GetFound() {
				printScanned(out, r.Get.GetKv(), false, false)
			} else {
				fmt.Fprintf(out, "%s (not found)\n", opKey(branchOps, i))
			}
		case *pb.ResponseOp_Put:
			fmt.Fprintf(out, "OK mod_revision=%d version=%d\n", r.Put.GetKv().GetModRevision(), r.Put.GetKv().GetVersion())
		case *pb.ResponseOp_Delete:
			fmt.Fprintf(out, "OK deleted=%t\n", r.Delete.GetDeleted())
		default:
			fmt.Fprintln(out, "? (unknown response)")
		}
	}
	return out.Flush()
}

// jsonTxn is the --json form of a transaction's response.
type jsonTxn struct {
	Succeeded bool `json:"succeeded"`
	// Revision is 0 when the transaction wrote nothing.
	Revision  int64       `json:"revision"`
	Responses []jsonTxnOp `json:"responses"`
}

// jsonTxnOp is the response to one operation. Key is the operation's key;
// KV is the key as read (get, when found) or as written (put, without its
// value).
type jsonTxnOp struct {
	Op        string  `json:"op"`
	Key       *string `json:"key,omitempty"`
	KeyBase64 *string `json:"key_base64,omitempty"`
	Found     *bool   `json:"found,omitempty"`
	Deleted   *bool   `json:"deleted,omitempty"`
	KV        *jsonKV `json:"kv,omitempty"`
}

func newJSONTxn(req *pb.TxnRequest, resp *pb.TxnResponse) jsonTxn {
	j := jsonTxn{Succeeded: resp.GetSucceeded(), Revision: resp.GetRevision(), Responses: []jsonTxnOp{}}
	branchOps := branch(req, resp)
	for i, r := range resp.GetResponses() {
		var o jsonTxnOp
		o.Key, o.KeyBase64 = jsonBytes(opKey(branchOps, i))
		switch r := r.Response.(type) {
		case *pb.ResponseOp_Get:
			o.Op = "get"
			found := r.Get.GetFound()
			o.Found = &found
			if found {
				kv := newJSONKV(r.Get.GetKv(), false)
				o.KV = &kv
			}
		case *pb.ResponseOp_Put:
			o.Op = "put"
			kv := newJSONKV(r.Put.GetKv(), true)
			o.KV = &kv
		case *pb.ResponseOp_Delete:
			o.Op = "del"
			deleted := r.Delete.GetDeleted()
			o.Deleted = &deleted
		}
		j.Responses = append(j.Responses, o)
	}
	return j
}

package nemesis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftrix/raftrixdb/node"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// The register workload: clients read, write (unique values),
// compare-and-set and delete a few keys through random nodes. Every operation goes into
// a porcupine history, checked per key against a register model.

type regOpKind uint8

const (
	regGet regOpKind = iota
	regPut
	regCAS
	regDelete
)

// RegInput is the input of one register operation.
type RegInput struct {
	Op       regOpKind
	Key      string
	Value    string // put / CAS: the value written
	Expected string // CAS: the value expected
}

// RegOutput is what a register operation observed. Unknown marks a write
// whose outcome the client cannot know (a timeout, a lost connection); its
// return time is after every other operation's, so the checker may place it
// anywhere after its call, or nowhere at all.
type RegOutput struct {
	Found   bool   // get: the key exists
	Value   string // get: its value
	OK      bool   // CAS: the compare held; delete: the key existed
	Unknown bool
	// Rev is the mod revision a get read or a put or CAS wrote; the model
	// ignores it, checkRevisions does not.
	Rev int64
}

// registerModel is a register per key; the state of one key is its value,
// "" when absent (written values are never empty).
var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(RegInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		st := state.(string)
		in := input.(RegInput)
		out := output.(RegOutput)
		switch in.Op {
		case regGet:
			if out.Found {
				return st == out.Value, st
			}
			return st == "", st
		case regPut:
			return true, in.Value
		case regDelete:
			return out.Unknown || out.OK == (st != ""), ""
		case regCAS:
			holds := st == in.Expected
			switch {
			case out.Unknown:
				if holds {
					return true, in.Value
				}
				return true, st
			case out.OK:
				return holds, in.Value
			default:
				return !holds, st
			}
		}
		return false, st
	},
	DescribeOperation: func(input, output any) string {
		in := input.(RegInput)
		out := output.(RegOutput)
		switch in.Op {
		case regGet:
			if !out.Found {
				return fmt.Sprintf("get(%s) -> absent", in.Key)
			}
			return fmt.Sprintf("get(%s) -> %s", in.Key, out.Value)
		case regPut:
			if out.Unknown {
				return fmt.Sprintf("put(%s, %s) -> unknown", in.Key, in.Value)
			}
			return fmt.Sprintf("put(%s, %s)", in.Key, in.Value)
		case regDelete:
			switch {
			case out.Unknown:
				return fmt.Sprintf("delete(%s) -> unknown", in.Key)
			case out.OK:
				return fmt.Sprintf("delete(%s) -> deleted", in.Key)
			}
			return fmt.Sprintf("delete(%s) -> absent", in.Key)
		default:
			res := "fail"
			if out.Unknown {
				res = "unknown"
			} else if out.OK {
				res = "ok"
			}
			return fmt.Sprintf("cas(%s, %s -> %s) -> %s", in.Key, in.Expected, in.Value, res)
		}
	},
	DescribeState: func(state any) string {
		if state.(string) == "" {
			return "absent"
		}
		return state.(string)
	},
}

// outcome classifies a KV answer.
type outcome uint8

const (
	outOK outcome = iota
	// outCompareFailed: a conditional write found its condition false and
	// wrote nothing. A definite result that tells something about the state.
	outCompareFailed
	// outFailed: refused before anything was done (routing error, bad
	// request, connection never established).
	outFailed
	// outUnknown: a write may or may not have been applied.
	outUnknown
)

func classify(err error) outcome {
	if err == nil {
		return outOK
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.FailedPrecondition:
		return outCompareFailed
	case codes.InvalidArgument:
		return outFailed
	case codes.Unavailable:
		if node.RoutingErrorOf(err) != nil || neverSent(st.Message()) {
			return outFailed
		}
	}
	return outUnknown
}

// neverSent recognises gRPC failures that happen before a request leaves
// the client: gRPC sends only on a connection that has completed its
// handshake, and these are the errors of connections that never did.
func neverSent(msg string) bool {
	return strings.Contains(msg, "Error while dialing") ||
		strings.Contains(msg, "error reading server preface")
}

// history collects porcupine operations from concurrent clients.
type history struct {
	mu       sync.Mutex
	ops      []porcupine.Operation
	unknown  []int // indexes of ops with unknown outcome
	start    time.Time
	internal []string // unexpected errors (Internal, Unknown codes)
}

func newHistory(start time.Time) *history { return &history{start: start} }

func (h *history) now() int64 { return time.Since(h.start).Nanoseconds() }

func (h *history) add(op porcupine.Operation, unknown bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if unknown {
		h.unknown = append(h.unknown, len(h.ops))
	}
	h.ops = append(h.ops, op)
}

func (h *history) noteInternal(s string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.internal) < 20 {
		h.internal = append(h.internal, s)
	}
}

// operations returns the history with every unknown operation's return set
// after all other events.
func (h *history) operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	ops := append([]porcupine.Operation(nil), h.ops...)
	var last int64
	for _, op := range ops {
		last = max(last, op.Call, op.Return)
	}
	for _, i := range h.unknown {
		ops[i].Return = last + 1
	}
	return ops
}

// registerClient runs one client of the register workload until the shared
// budget is spent or ctx ends.
type registerClient struct {
	id      int
	clients int // total, to renumber the process after an unknown outcome
	rng     *rand.Rand
	w       *workload
	h       *history
	last    map[string]string // the last value this client saw per key
	seq     int
}

func (c *registerClient) run(ctx context.Context) {
	proc := c.id
	for ctx.Err() == nil && c.w.take() {
		c.w.think(ctx, c.rng)
		if ctx.Err() != nil {
			return
		}
		key := c.w.regKeys[c.rng.IntN(len(c.w.regKeys))]
		nodeID := c.w.nodes[c.rng.IntN(len(c.w.nodes))]
		in := RegInput{Key: key}
		switch p := c.rng.IntN(20); {
		case p < 8:
			in.Op = regGet
		case p < 13:
			in.Op = regPut
		case p < 19:
			in.Op = regCAS
		default:
			in.Op = regDelete
		}
		if in.Op == regPut || in.Op == regCAS {
			c.seq++
			in.Value = fmt.Sprintf("c%d-%d", c.id, c.seq)
		}
		if in.Op == regCAS {
			in.Expected = c.last[key]
			if in.Expected == "" {
				in.Op = regPut // nothing to compare with yet
			}
		}
		unknown := c.do(ctx, proc, nodeID, in)
		if unknown {
			// Like a crashed Jepsen process: the client carries on under a
			// new identity, since the old one may still have a write pending.
			proc += c.clients
		}
	}
}

// do runs one operation and records it; it reports an unknown outcome.
func (c *registerClient) do(ctx context.Context, proc int, nodeID uint64, in RegInput) bool {
	kv := c.w.c.KV(nodeID)
	octx, cancel := context.WithTimeout(ctx, c.w.cfg.OpTimeout)
	defer cancel()
	key := []byte(in.Key)
	call := c.h.now()
	var out RegOutput
	var err error
	switch in.Op {
	case regGet:
		var resp *pb.GetResponse
		resp, err = kv.Get(octx, &pb.GetRequest{Key: key})
		if err == nil {
			out.Found = resp.Found
			if resp.Found {
				out.Value = string(resp.Kv.Value)
				out.Rev = resp.Kv.ModRevision
			}
		}
	case regPut, regCAS:
		req := &pb.PutRequest{Key: key, Value: []byte(in.Value)}
		if in.Op == regCAS {
			req.ExpectedValue = []byte(in.Expected)
		}
		var resp *pb.PutResponse
		resp, err = kv.Put(octx, req)
		if err == nil {
			out.Rev = resp.GetKv().GetModRevision()
		}
	case regDelete:
		var resp *pb.DeleteResponse
		resp, err = kv.Delete(octx, &pb.DeleteRequest{Key: key})
		if err == nil {
			out.OK = resp.Deleted
		}
	}
	ret := c.h.now()
	meta := fmt.Sprintf("node %d", nodeID)
	if err != nil {
		meta += ": " + err.Error()
	}
	o := classify(err)
	c.w.countOutcome(o)
	if code := status.Code(err); code == codes.Internal || code == codes.Unknown {
		c.h.noteInternal(fmt.Sprintf("%s on node %d: %v", describeInput(in), nodeID, err))
	}
	switch {
	case o == outOK:
		switch in.Op {
		case regGet:
			c.last[in.Key] = out.Value
		case regDelete:
			c.last[in.Key] = ""
		default:
			c.last[in.Key] = in.Value
			out.OK = true
		}
	case o == outCompareFailed && in.Op == regCAS:
		out.OK = false
		delete(c.last, in.Key) // re-learn by reading
	case in.Op == regGet || o == outFailed:
		// A failed read observed nothing; a refused write did nothing.
		return false
	case o == outCompareFailed:
		c.h.noteInternal(fmt.Sprintf("unconditional %s failed its compare: %v", describeInput(in), err))
		return false
	default: // unknown write
		out.Unknown = true
	}
	c.h.add(porcupine.Operation{ClientId: proc, Input: in, Call: call, Output: out, Return: ret, Metadata: meta}, out.Unknown)
	return out.Unknown
}

func describeInput(in RegInput) string {
	return registerModel.DescribeOperation(in, RegOutput{Found: true})
}

// checkRevisions checks what the register history says about mod revisions:
// a key's mod revision strictly increases over its life, so
//   - a read of a value returns the revision its write returned (values are
//     unique), and every read of one value returns the same revision;
//   - a write or read that finished before another started on the same key
//     saw a revision no greater (strictly smaller for two writes).
//
// Operations with unknown outcomes carry no revision and are skipped.
func checkRevisions(ops []porcupine.Operation) []string {
	type obs struct {
		call, ret int64
		rev       int64
		write     bool
		desc      string
	}
	var v []string
	byKey := map[string][]obs{}
	revOf := map[string]obs{} // value -> first observation of its revision
	for _, op := range ops {
		in, out := op.Input.(RegInput), op.Output.(RegOutput)
		if out.Unknown || out.Rev == 0 {
			continue // unknown outcome, absent key, failed CAS, delete
		}
		o := obs{call: op.Call, ret: op.Return, rev: out.Rev, write: in.Op != regGet,
			desc: registerModel.DescribeOperation(in, out)}
		byKey[in.Key] = append(byKey[in.Key], o)
		value := in.Value
		if in.Op == regGet {
			value = out.Value
		}
		if prev, ok := revOf[value]; !ok {
			revOf[value] = o
		} else if prev.rev != o.rev {
			v = append(v, fmt.Sprintf("revisions: %s @rev %d but %s @rev %d", prev.desc, prev.rev, o.desc, o.rev))
		}
	}
	for _, list := range byKey {
		sort.Slice(list, func(i, j int) bool { return list[i].ret < list[j].ret })
		for _, b := range list {
			for _, a := range list {
				if a.ret >= b.call {
					break // sorted by return: no later one finished before b
				}
				// A write after a is linearized after a, so it gets a
				// greater revision; a read sees a's revision or a later one.
				if a.rev > b.rev || (b.write && a.rev == b.rev) {
					v = append(v, fmt.Sprintf("revisions: %s @rev %d finished before %s @rev %d started", a.desc, a.rev, b.desc, b.rev))
				}
			}
		}
	}
	if len(v) > 20 {
		v = append(v[:20], fmt.Sprintf("... and %d more revision anomalies", len(v)-20))
	}
	return v
}

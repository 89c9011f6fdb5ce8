package nemesis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/raftrix/raftrixdb/internal/faultcluster"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// The bank workload: one account in each initial range, each opened with
// bankInitial. Clients move money between two accounts with cross-range
// transactions (read both in one transaction, then write both new balances
// if neither changed meanwhile) and read every balance in one transaction.
// A transfer that times out is left to the two-phase commit's recovery,
// which must finish or undo it whole: every read that succeeds, during the
// faults and after the final heal, must see the money conserved and no
// balance negative. The final read also settles every transaction a killed
// coordinator left behind, so it checks recovery too.

const (
	bankMarker  = "/bank/"
	bankInitial = 100
)

type bankState struct {
	accounts [][]byte
	total    int

	mu                        sync.Mutex
	transfers, unknown, reads int
	violations                []string
}

func newBankState(ranges int) *bankState {
	b := &bankState{total: ranges * bankInitial}
	for i := 0; i < ranges; i++ {
		b.accounts = append(b.accounts, []byte(keyInRange(i, ranges, fmt.Sprintf("%sacct%d", bankMarker, i))))
	}
	return b
}

// open writes every opening balance, through any node, before the faults
// start.
func (b *bankState) open(ctx context.Context, c *faultcluster.Cluster, nodes []uint64) error {
	req := &pb.TxnRequest{}
	for _, a := range b.accounts {
		req.Success = append(req.Success, &pb.RequestOp{Request: &pb.RequestOp_Put{Put: &pb.PutRequest{Key: a, Value: []byte(strconv.Itoa(bankInitial))}}})
	}
	if err := throughAnyNode(ctx, nodes, func(ctx context.Context, nodeID uint64) error {
		_, err := c.KV(nodeID).Txn(ctx, req)
		return err
	}); err != nil {
		return fmt.Errorf("opening the bank accounts: %w", err)
	}
	return nil
}

// throughAnyNode calls fn through each node in turn, each call bounded by
// 2s, until one succeeds or ctx ends.
func throughAnyNode(ctx context.Context, nodes []uint64, fn func(ctx context.Context, nodeID uint64) error) error {
	var last error
	for attempt := 0; ctx.Err() == nil; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := fn(actx, nodes[attempt%len(nodes)])
		cancel()
		if err == nil {
			return nil
		}
		last = err
		sleep(ctx, 50*time.Millisecond)
	}
	return fmt.Errorf("%v (last error: %v)", ctx.Err(), last)
}

// readAll reads every balance in one transaction through nodeID. It
// returns an error if the read failed, and records a violation if it
// succeeded and saw money created or destroyed.
func (b *bankState) readAll(ctx context.Context, kv pb.KVClient, nodeID uint64) ([]int, error) {
	req := &pb.TxnRequest{}
	for _, a := range b.accounts {
		req.Success = append(req.Success, &pb.RequestOp{Request: &pb.RequestOp_Get{Get: &pb.GetRequest{Key: a}}})
	}
	resp, err := kv.Txn(ctx, req)
	if err != nil {
		return nil, err
	}
	balances, problem := b.parse(resp)
	if problem == "" {
		sum := 0
		for i, v := range balances {
			sum += v
			if v < 0 && problem == "" {
				problem = fmt.Sprintf("account %d is negative", i)
			}
		}
		if sum != b.total && problem == "" {
			problem = fmt.Sprintf("total is %d, want %d", sum, b.total)
		}
	}
	if problem != "" {
		b.mu.Lock()
		b.violations = append(b.violations, fmt.Sprintf("bank: a read of every balance through node %d: %s (balances %v)", nodeID, problem, balances))
		b.mu.Unlock()
	}
	return balances, nil
}

// parse extracts the balances of a transaction of gets, one per account
// in order, or says what is wrong with it.
func (b *bankState) parse(resp *pb.TxnResponse) ([]int, string) {
	if len(resp.Responses) != len(b.accounts) {
		return nil, fmt.Sprintf("%d answers to %d gets", len(resp.Responses), len(b.accounts))
	}
	balances := make([]int, len(b.accounts))
	for i, r := range resp.Responses {
		kv := r.GetGet().GetKv()
		if kv == nil {
			return nil, fmt.Sprintf("account %d is missing", i)
		}
		v, err := strconv.Atoi(string(kv.Value))
		if err != nil {
			return nil, fmt.Sprintf("account %d holds %q", i, kv.Value)
		}
		balances[i] = v
	}
	return balances, ""
}

type bankClient struct {
	rng *rand.Rand
	w   *workload
	b   *bankState
}

func (c *bankClient) run(ctx context.Context) {
	for ctx.Err() == nil && c.w.take() {
		c.w.think(ctx, c.rng)
		if ctx.Err() != nil {
			return
		}
		nodeID := c.w.nodes[c.rng.IntN(len(c.w.nodes))]
		kv := c.w.c.KV(nodeID)
		octx, cancel := context.WithTimeout(ctx, c.w.cfg.OpTimeout)
		if c.rng.IntN(4) == 0 {
			if _, err := c.b.readAll(octx, kv, nodeID); err == nil {
				c.b.mu.Lock()
				c.b.reads++
				c.b.mu.Unlock()
			}
		} else {
			from := c.rng.IntN(len(c.b.accounts))
			to := (from + 1 + c.rng.IntN(len(c.b.accounts)-1)) % len(c.b.accounts)
			c.transfer(octx, kv, from, to, 1+c.rng.IntN(20))
		}
		cancel()
	}
}

// transfer moves amount from one account to another, if the first holds
// that much: a transaction reads both balances, and a second one writes
// both new balances provided neither account changed in between.
func (c *bankClient) transfer(ctx context.Context, kv pb.KVClient, from, to, amount int) {
	b := c.b
	get := func(i int) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_Get{Get: &pb.GetRequest{Key: b.accounts[i]}}}
	}
	resp, err := kv.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{get(from), get(to)}})
	if err != nil {
		return // nothing written
	}
	if len(resp.Responses) != 2 {
		return // the final read reports what is wrong
	}
	var kvs [2]*pb.KeyValue
	var balances [2]int
	for i, r := range resp.Responses {
		if kvs[i] = r.GetGet().GetKv(); kvs[i] == nil {
			return // the final read reports a missing account
		}
		balances[i], _ = strconv.Atoi(string(kvs[i].Value))
	}
	if balances[0] < amount {
		return
	}
	put := func(i, balance int) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_Put{Put: &pb.PutRequest{Key: b.accounts[i], Value: []byte(strconv.Itoa(balance))}}}
	}
	same := func(kv *pb.KeyValue) *pb.Compare {
		return &pb.Compare{Key: kv.Key, Target: pb.Compare_MOD_REVISION, Result: pb.Compare_EQUAL, ModRevision: kv.ModRevision}
	}
	resp, err = kv.Txn(ctx, &pb.TxnRequest{
		Compare: []*pb.Compare{same(kvs[0]), same(kvs[1])},
		Success: []*pb.RequestOp{put(from, balances[0]-amount), put(to, balances[1]+amount)},
	})
	o := classify(err)
	c.w.countOutcome(o)
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case o == outOK && resp.Succeeded:
		b.transfers++
	case o == outUnknown:
		b.unknown++
	}
}

// finalCheck reads every balance after the heal, through each node in turn
// until a read succeeds or ctx ends, and returns the violations found over
// the whole run.
func (b *bankState) finalCheck(ctx context.Context, c *faultcluster.Cluster, nodes []uint64) []string {
	err := throughAnyNode(ctx, nodes, func(ctx context.Context, nodeID uint64) error {
		_, err := b.readAll(ctx, c.KV(nodeID), nodeID)
		return err
	})
	b.mu.Lock()
	defer b.mu.Unlock()
	v := append([]string(nil), b.violations...)
	if err != nil {
		v = append(v, fmt.Sprintf("bank: no read of every balance succeeded after the heal: %v", err))
	}
	return v
}

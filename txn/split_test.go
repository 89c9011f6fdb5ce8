package txn_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/raftrix/raftrixdb/internal/hlc"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
	"github.com/raftrix/raftrixdb/txn"
)

// onceLookup answers which range holds a key the first time it is asked
// about that key, and fails every later question about it: as a lookup
// through placement does when a partition starts between two questions
// (a split between them gives a different range instead).
type onceLookup struct {
	txn.RangeLookup
	mu    sync.Mutex
	asked map[string]bool
}

func (l *onceLookup) RangeFor(ctx context.Context, key []byte) (uint64, error) {
	l.mu.Lock()
	again := l.asked[string(key)]
	l.asked[string(key)] = true
	l.mu.Unlock()
	if again {
		return 0, errors.New("placement unreachable")
	}
	return l.RangeLookup.RangeFor(ctx, key)
}

// TestRunAsksForEachKeysRangeOnce runs a transaction over two ranges whose
// compares and operations name the same keys several times, with a lookup
// that fails any second question about a key. The coordinator must place
// every compare and operation by the answer it got for the key: it once
// asked again per compare and operation, ignored the error, and panicked
// on a nil participant (make test-nemesis, seed 64).
func TestRunAsksForEachKeysRangeOnce(t *testing.T) {
	c := startCluster(t, 3, 2, time.Second)
	n := c.Node(1)
	lookup := &onceLookup{RangeLookup: n, asked: map[string]bool{}}
	co := txn.NewCoordinator(txn.Config{Sender: n, Lookup: lookup, Clock: hlc.New(hlc.SystemClock{}), Expiry: time.Second})
	defer co.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, b := keyInRange(0, 2, "once/a"), keyInRange(1, 2, "once/b")
	resp, err := co.Run(ctx, &pb.TxnRequest{
		Compare: []*pb.Compare{{Key: a, Target: pb.Compare_VERSION, Result: pb.Compare_EQUAL, Version: 0}},
		Success: []*pb.RequestOp{putOp(a, "1"), putOp(b, "1")},
		Failure: []*pb.RequestOp{putOp(b, "failed")},
	})
	if err != nil {
		t.Fatalf("transaction: %v", err)
	}
	if !resp.Succeeded || len(resp.Responses) != 2 {
		t.Fatalf("transaction answered %v, want the success branch's two puts", resp)
	}
	for _, k := range [][]byte{a, b} {
		got, err := c.KV(1).Get(ctx, &pb.GetRequest{Key: k})
		if err != nil || got.Kv == nil || string(got.Kv.Value) != "1" {
			t.Fatalf("get %q after the transaction: %v, %v", k, got, err)
		}
	}
}

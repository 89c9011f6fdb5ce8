package txn_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/raftrix/raftrixdb/internal/hlc"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
	"github.com/raftrix/raftrixdb/txn"
)

// TestCloseWhileTransactionsRun closes a coordinator while transactions
// across two ranges still run on it, as a node's Stop does. Transactions
// that finish after Close has begun must not start background resolution:
// adding to the background count while Close waits on it is a data race
// (`go test -race`, found in TestBank when a node stopped mid-run), and
// their intents are left for readers to settle. Every Run returns.
func TestCloseWhileTransactionsRun(t *testing.T) {
	c := startCluster(t, 3, 2, time.Second)
	n := c.Node(1)
	co := txn.NewCoordinator(txn.Config{Sender: n, Lookup: n, Clock: hlc.New(hlc.SystemClock{}), Expiry: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				v := fmt.Sprintf("w%d-%d", w, i)
				rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
				_, _ = co.Run(rctx, &pb.TxnRequest{Success: []*pb.RequestOp{
					putOp(keyInRange(0, 2, fmt.Sprintf("close/%d", w)), v),
					putOp(keyInRange(1, 2, fmt.Sprintf("close/%d", w)), v),
				}})
				rcancel()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	co.Close()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
}

package txn

import (
	"context"
	"fmt"
	"sync"
	"time"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// A finished transaction's record must outlive its intents: whoever meets
// an intent reads the record to settle it. Once the coordinator has
// resolved every intent, the record is garbage. Deleting it with a Raft
// command of its own would cost as much as a resolution; instead the
// coordinator collects the records to delete and sends them every
// recordGCInterval, one DeleteTxnRecords command per range. A record left
// behind (the node stopped before the batch went out) is harmless garbage:
// it only answers pushes for a transaction that no longer has intents.
const (
	recordGCInterval = 200 * time.Millisecond
	// recordGCMaxPending sends the batches early when this many records
	// wait.
	recordGCMaxPending = 4096
)

// recordGC batches the deletion of finished transactions' records.
type recordGC struct {
	c  *Coordinator
	mu sync.Mutex
	// pending are the records to delete, in no order; they are grouped by
	// range when sent, so that a split in between does not matter.
	pending []*pb.TxnRecordRef
}

// add queues the deletion of a record whose intents are all resolved.
func (g *recordGC) add(primary, txnID []byte) {
	g.mu.Lock()
	g.pending = append(g.pending, &pb.TxnRecordRef{PrimaryKey: primary, TxnId: txnID})
	full := len(g.pending) >= recordGCMaxPending
	g.mu.Unlock()
	if full {
		g.flush(g.c.bgCtx)
	}
}

// run sends the queued deletions every recordGCInterval until ctx ends.
func (g *recordGC) run(ctx context.Context) {
	t := time.NewTicker(recordGCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.flush(ctx)
		}
	}
}

// flush sends the queued deletions, one command per range, in parallel,
// and waits for them.
func (g *recordGC) flush(ctx context.Context) {
	g.mu.Lock()
	refs := g.pending
	g.pending = nil
	g.mu.Unlock()
	byRange := map[uint64][]*pb.TxnRecordRef{}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	for _, ref := range refs {
		// A record whose range cannot be found now stays: garbage.
		if id, err := g.c.cfg.Lookup.RangeFor(lctx, ref.PrimaryKey); err == nil {
			byRange[id] = append(byRange[id], ref)
		}
	}
	cancel()
	var wg sync.WaitGroup
	for _, batch := range byRange {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_, err := g.c.cfg.Sender.Evaluate(sctx, &pb.InternalRequest{Key: batch[0].PrimaryKey,
				Op: &pb.InternalRequest_DeleteRecords{DeleteRecords: &pb.DeleteTxnRecords{Records: batch}}})
			if err != nil {
				g.c.cfg.Logger.Debug("delete transaction records", "records", len(batch), "key", fmt.Sprintf("%q", batch[0].PrimaryKey), "error", err)
			}
		}()
	}
	wg.Wait()
}

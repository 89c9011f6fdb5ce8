package txn

import (
	"context"
	"math/rand/v2"
	"time"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Settle finds out the fate of the transaction that holds an intent on key
// and, if it is finished, resolves the intent. A PENDING transaction whose
// heartbeat has expired (or whose record is missing and which started
// before the expiry) is aborted first; force aborts a PENDING one regardless
// (an older transaction wounding a younger one). It returns the record as
// found or left. PENDING means the transaction had not committed when its
// record was read; the intent may nevertheless be gone by now (resolved and
// its record deleted in between), so a reader that wants the value before
// the intent must check that the same intent is still there.
func (c *Coordinator) Settle(ctx context.Context, key []byte, in *pb.Intent, force bool) (*pb.TxnRecord, error) {
	expireBefore := c.cfg.Clock.Next() - int64(c.cfg.Expiry)
	resp, err := c.cfg.Sender.Evaluate(ctx, &pb.InternalRequest{Key: in.PrimaryKey, Op: &pb.InternalRequest_Push{Push: &pb.TxnPush{
		TxnId: in.TxnId, PrimaryKey: in.PrimaryKey, ExpireBefore: expireBefore, Force: force, TxnTimestamp: in.Timestamp,
	}}})
	if err != nil {
		return nil, err
	}
	rec := resp.Record
	if rec.Status == pb.TxnRecord_PENDING {
		return rec, nil
	}
	_, err = c.cfg.Sender.Evaluate(ctx, &pb.InternalRequest{Key: key, Op: &pb.InternalRequest_Resolve{Resolve: &pb.ResolveIntents{
		TxnId: in.TxnId, Record: rec, Keys: [][]byte{key}, PrimaryKey: in.PrimaryKey,
	}}})
	return rec, err
}

// backoff is jittered exponential backoff for conflict retries.
type backoff struct{ next time.Duration }

func newBackoff() *backoff { return &backoff{next: 5 * time.Millisecond} }

func (b *backoff) wait(ctx context.Context) error {
	d := b.next/2 + time.Duration(rand.Int64N(int64(b.next)))
	b.next = min(b.next*2, 200*time.Millisecond)
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

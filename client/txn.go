package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Txn is an interactive transaction: reads go to the cluster and remember
// each key's mod revision; writes are buffered until commit.
type Txn struct {
	db *DB
	// reads maps a key to the mod revision it had when first read (0 if
	// absent).
	reads map[string]int64
	// writes maps a key to its buffered write (nil value: delete).
	writes map[string]*bufferedWrite
	// prefetched holds values read in one atomic transaction before this
	// attempt (nil value: absent), so a retry sees a consistent snapshot.
	prefetched map[string]*pb.KeyValue
	// readOutside is set when a read was not served from prefetched.
	readOutside bool
}

type bufferedWrite struct {
	value  []byte
	delete bool
}

// Get reads a key as the transaction sees it: its own buffered write if
// any, otherwise the committed value (found is false if absent).
func (tx *Txn) Get(ctx context.Context, key []byte) (value []byte, found bool, err error) {
	if w, ok := tx.writes[string(key)]; ok {
		return w.value, !w.delete, nil
	}
	kv, ok := tx.prefetched[string(key)]
	if !ok {
		tx.readOutside = true
		if kv, err = tx.db.Get(ctx, key); err != nil {
			return nil, false, err
		}
	}
	var rev int64
	if kv != nil {
		rev = kv.ModRevision
	}
	if prev, seen := tx.reads[string(key)]; seen && prev != rev {
		// Reading the same key twice and seeing a change means the
		// transaction cannot commit; stop early.
		return nil, false, errRetry
	}
	tx.reads[string(key)] = rev
	if kv == nil {
		return nil, false, nil
	}
	return kv.Value, true, nil
}

// Put buffers a write.
func (tx *Txn) Put(key, value []byte) {
	tx.writes[string(key)] = &bufferedWrite{value: append([]byte(nil), value...)}
}

// Delete buffers a delete.
func (tx *Txn) Delete(key []byte) {
	tx.writes[string(key)] = &bufferedWrite{delete: true}
}

type retryError struct{}

func (retryError) Error() string { return "transaction conflict; retry" }

var errRetry error = retryError{}

// request builds the commit: compare every read key's mod revision, then
// apply the buffered writes.
func (tx *Txn) request() *pb.TxnRequest {
	req := &pb.TxnRequest{}
	keys := make([]string, 0, len(tx.reads))
	for k := range tx.reads {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		req.Compare = append(req.Compare, &pb.Compare{
			Key: []byte(k), Target: pb.Compare_MOD_REVISION, Result: pb.Compare_EQUAL, ModRevision: tx.reads[k],
		})
	}
	keys = keys[:0]
	for k := range tx.writes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w := tx.writes[k]
		if w.delete {
			req.Success = append(req.Success, &pb.RequestOp{Request: &pb.RequestOp_Delete{Delete: &pb.DeleteRequest{Key: []byte(k)}}})
		} else {
			req.Success = append(req.Success, &pb.RequestOp{Request: &pb.RequestOp_Put{Put: &pb.PutRequest{Key: []byte(k), Value: w.value}}})
		}
	}
	return req
}

// Txn runs fn as a strictly serializable transaction. fn may run several
// times: it must not have effects outside tx. If fn returns an error the
// transaction is abandoned and the error returned. Conflicts rerun fn with
// backoff up to MaxTxnRetries, then ErrTxnConflict.
//
// Read-only transactions commit too (with compares only), so that all their
// reads are checked to hold at one instant.
func (db *DB) Txn(ctx context.Context, fn func(tx *Txn) error) error {
	wait := 5 * time.Millisecond
	var lastReads map[string]int64
	for attempt := 0; attempt < db.cfg.MaxTxnRetries; attempt++ {
		tx := &Txn{db: db, reads: map[string]int64{}, writes: map[string]*bufferedWrite{}}
		if attempt > 0 {
			select {
			case <-time.After(wait/2 + time.Duration(rand.Int64N(int64(wait)))):
				wait = min(2*wait, 300*time.Millisecond)
			case <-ctx.Done():
				return ctx.Err()
			}
			// Reading keys one by one leaves a window in which a busy key
			// changes; read the previous attempt's keys in one atomic
			// transaction instead, so the retry starts from a snapshot.
			if len(lastReads) > 1 {
				snap, err := db.readSnapshot(ctx, lastReads)
				if err != nil {
					return err
				}
				tx.prefetched = snap
			}
		}
		if err := fn(tx); err != nil {
			if errors.Is(err, errRetry) {
				lastReads = tx.reads
				continue
			}
			return err
		}
		if len(tx.writes) == 0 && (len(tx.reads) == 0 || (tx.prefetched != nil && !tx.readOutside)) {
			// Nothing to write, and every read came from one atomic
			// snapshot: the reads already hold at one instant.
			return nil
		}
		resp, err := db.Commit(ctx, tx.request())
		if err != nil {
			return fmt.Errorf("client: commit: %w", err)
		}
		if resp.Succeeded {
			return nil
		}
		lastReads = tx.reads
	}
	return ErrTxnConflict
}

// readSnapshot reads keys in one transaction of gets.
func (db *DB) readSnapshot(ctx context.Context, keys map[string]int64) (map[string]*pb.KeyValue, error) {
	req := &pb.TxnRequest{}
	for k := range keys {
		req.Success = append(req.Success, &pb.RequestOp{Request: &pb.RequestOp_Get{Get: &pb.GetRequest{Key: []byte(k)}}})
	}
	resp, err := db.Commit(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("client: read snapshot: %w", err)
	}
	snap := make(map[string]*pb.KeyValue, len(keys))
	for i, r := range resp.Responses {
		snap[string(req.Success[i].GetGet().Key)] = r.GetGet().GetKv()
	}
	return snap, nil
}

package node

import (
	"context"
	"slices"
	"time"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// maxBatchItems bounds the requests of one Batch call.
const maxBatchItems = 1000

// maxItemWorkers bounds the goroutines kept to run batch items (about the
// requests a loaded node has in flight at once); more items than that run
// on goroutines of their own.
const maxItemWorkers = 1024

// Batch runs independent gets, puts, deletes and transactions, each exactly as its own
// call would run (same validation, routing, forwarding and errors), all at
// once: puts to different ranges join the same Raft round. The batch's
// gRPC cost is paid once; see client/batch.go for why the client batches.
//
// A malformed batch (no items, too many, an item without a request, a
// negative timeout) is refused as a whole before any item runs.
func (s *kvServer) Batch(ctx context.Context, req *pb.BatchRequest) (*pb.BatchResponse, error) {
	n := s.n
	if len(req.Items) == 0 {
		return nil, n.toStatus(invalidf("batch has no items"))
	}
	if len(req.Items) > maxBatchItems {
		return nil, n.toStatus(invalidf("batch has %d items, more than the limit of %d", len(req.Items), maxBatchItems))
	}
	for i, it := range req.Items {
		if it.Request == nil {
			return nil, n.toStatus(invalidf("batch item %d has no request", i))
		}
		if it.TimeoutMicros < 0 {
			return nil, n.toStatus(invalidf("batch item %d has a negative timeout", i))
		}
	}
	ctxs, cancel := itemContexts(ctx, time.Now(), req.Items)
	defer cancel()
	resp := &pb.BatchResponse{Results: make([]*pb.BatchResult, len(req.Items))}
	n.items.Each(len(req.Items), func(i int) { resp.Results[i] = s.batchItem(ctxs[i], req.Items[i]) })
	return resp, nil
}

// itemDeadlineSlack is how much later than its own deadline a batch item may
// be stopped: items whose deadlines lie within it of each other share one
// context, ended by the latest of them.
const itemDeadlineSlack = 10 * time.Millisecond

// itemContexts returns each item's context: ctx for an item without a
// timeout, else one that reports the item's own deadline (a forward to
// another node carries it) and ends at the latest deadline of the items
// within itemDeadlineSlack after the first of them. The items of one batch
// mostly have nearly the same deadline, so most batches need one timer
// instead of one per item (context.WithTimeout per item was 2.4% of the
// nodes' CPU under puts, scripts/profile.sh). An item's caller has given
// up at its deadline already; the slack only lets the server go on with it
// a little longer, as a timed-out request may have been applied anyway.
func itemContexts(ctx context.Context, received time.Time, items []*pb.BatchItem) ([]context.Context, context.CancelFunc) {
	ctxs := make([]context.Context, len(items))
	var timed []int
	for i, it := range items {
		ctxs[i] = ctx
		if it.TimeoutMicros > 0 {
			timed = append(timed, i)
		}
	}
	deadline := func(i int) time.Time {
		return received.Add(time.Duration(items[i].TimeoutMicros) * time.Microsecond)
	}
	slices.SortFunc(timed, func(a, b int) int { return deadline(a).Compare(deadline(b)) })
	var cancels []context.CancelFunc
	for len(timed) > 0 {
		n := 1
		for n < len(timed) && deadline(timed[n]).Sub(deadline(timed[0])) <= itemDeadlineSlack {
			n++
		}
		shared, cancel := context.WithDeadline(ctx, deadline(timed[n-1]))
		cancels = append(cancels, cancel)
		for _, i := range timed[:n] {
			ctxs[i] = itemContext{Context: shared, deadline: deadline(i)}
		}
		timed = timed[n:]
	}
	return ctxs, func() {
		for _, cancel := range cancels {
			cancel()
		}
	}
}

// itemContext is a context that reports an earlier deadline than the one
// it ends at (see itemContexts).
type itemContext struct {
	context.Context
	deadline time.Time
}

func (c itemContext) Deadline() (time.Time, bool) { return c.deadline, true }

func (s *kvServer) batchItem(ctx context.Context, it *pb.BatchItem) *pb.BatchResult {
	start := time.Now()
	var (
		res    *pb.BatchResult
		method string
		err    error
	)
	switch r := it.Request.(type) {
	case *pb.BatchItem_Get:
		var resp *pb.GetResponse
		resp, err = s.Get(ctx, r.Get)
		res, method = &pb.BatchResult{Result: &pb.BatchResult_Get{Get: resp}}, pb.KV_Get_FullMethodName
	case *pb.BatchItem_Put:
		var resp *pb.PutResponse
		resp, err = s.Put(ctx, r.Put)
		res, method = &pb.BatchResult{Result: &pb.BatchResult_Put{Put: resp}}, pb.KV_Put_FullMethodName
	case *pb.BatchItem_Delete:
		var resp *pb.DeleteResponse
		resp, err = s.Delete(ctx, r.Delete)
		res, method = &pb.BatchResult{Result: &pb.BatchResult_Delete{Delete: resp}}, pb.KV_Delete_FullMethodName
	case *pb.BatchItem_Txn:
		var resp *pb.TxnResponse
		resp, err = s.Txn(ctx, r.Txn)
		res, method = &pb.BatchResult{Result: &pb.BatchResult_Txn{Txn: resp}}, pb.KV_Txn_FullMethodName
	}
	s.n.metrics.observeCall(method, start, err)
	if err != nil {
		return &pb.BatchResult{Result: &pb.BatchResult_Error{Error: pb.StatusOf(err)}}
	}
	return res
}

package node

import (
	"context"
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
	resp := &pb.BatchResponse{Results: make([]*pb.BatchResult, len(req.Items))}
	n.items.Each(len(req.Items), func(i int) { resp.Results[i] = s.batchItem(ctx, req.Items[i]) })
	return resp, nil
}

// batchItem runs one item as its own call and records it in the gRPC
// metrics under that call's method, so dashboards count puts however they
// arrived.
func (s *kvServer) batchItem(ctx context.Context, it *pb.BatchItem) *pb.BatchResult {
	if it.TimeoutMicros > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(it.TimeoutMicros)*time.Microsecond)
		defer cancel()
	}
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

package client

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftrix/raftrixdb/internal/batch"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Get, Put, Delete and Txn requests that many goroutines send to one node
// at the same time travel together in one KV.Batch call (internal/batch
// says why and how). Each request in a batch fails or succeeds alone, with
// the status its own call would have had (routing errors included), so
// retries and the range cache work as for single calls.

const (
	// maxBatchesInFlight bounds the calls (single or batch) outstanding to
	// one node; requests beyond them queue for the next batch.
	maxBatchesInFlight = 4
	// maxBatchItems and maxBatchBytes bound one batch; the node takes up to
	// 1,000 items, and its request size limit (4 MiB by default) must hold
	// the whole batch.
	maxBatchItems = 256
	maxBatchBytes = 1 << 20
)

// kvBatcher batches one node's requests.
type kvBatcher = batch.Batcher[*pb.BatchItem, *pb.BatchResult]

func newBatcher(kv pb.KVClient, st *stats) *kvBatcher {
	return batch.New(batch.Config[*pb.BatchItem, *pb.BatchResult]{
		One: func(ctx context.Context, item *pb.BatchItem) (*pb.BatchResult, error) {
			return sendOne(ctx, kv, item)
		},
		Many: func(ctx context.Context, items []*pb.BatchItem, deadlines []time.Time) ([]*pb.BatchResult, []error, error) {
			st.batches.Add(1)
			st.batchedRequests.Add(int64(len(items)))
			return sendMany(ctx, kv, items, deadlines)
		},
		Size:        itemSize,
		MaxInFlight: maxBatchesInFlight,
		MaxItems:    maxBatchItems,
		MaxBytes:    maxBatchBytes,
	})
}

// sendOne sends one request as a plain call.
func sendOne(ctx context.Context, kv pb.KVClient, item *pb.BatchItem) (*pb.BatchResult, error) {
	switch r := item.Request.(type) {
	case *pb.BatchItem_Get:
		resp, err := kv.Get(ctx, r.Get)
		return &pb.BatchResult{Result: &pb.BatchResult_Get{Get: resp}}, err
	case *pb.BatchItem_Put:
		resp, err := kv.Put(ctx, r.Put)
		return &pb.BatchResult{Result: &pb.BatchResult_Put{Put: resp}}, err
	case *pb.BatchItem_Delete:
		resp, err := kv.Delete(ctx, r.Delete)
		return &pb.BatchResult{Result: &pb.BatchResult_Delete{Delete: resp}}, err
	case *pb.BatchItem_Txn:
		resp, err := kv.Txn(ctx, r.Txn)
		return &pb.BatchResult{Result: &pb.BatchResult_Txn{Txn: resp}}, err
	}
	return nil, status.Errorf(codes.Internal, "client: batch item without a request")
}

// sendMany sends requests in one KV.Batch call, each with its own timeout.
func sendMany(ctx context.Context, kv pb.KVClient, items []*pb.BatchItem, deadlines []time.Time) ([]*pb.BatchResult, []error, error) {
	for i, t := range batch.TimeoutMicros(deadlines) {
		items[i].TimeoutMicros = t
	}
	resp, err := kv.Batch(ctx, &pb.BatchRequest{Items: items})
	if err != nil {
		return nil, nil, err
	}
	errs := make([]error, len(resp.Results))
	for i, res := range resp.Results {
		if e := res.GetError(); e != nil {
			resp.Results[i] = nil
			errs[i] = e.Err()
		}
	}
	return resp.Results, errs, nil
}

func itemSize(it *pb.BatchItem) int {
	switch r := it.Request.(type) {
	case *pb.BatchItem_Get:
		return len(r.Get.Key)
	case *pb.BatchItem_Put:
		return len(r.Put.Key) + len(r.Put.Value) + len(r.Put.ExpectedValue)
	case *pb.BatchItem_Delete:
		return len(r.Delete.Key)
	}
	return it.SizeVT() // a transaction
}

// batchingKV is the KV API of one node with single-key requests and
// transactions sent through its batcher; scans go straight to the node.
type batchingKV struct {
	pb.KVClient
	b *kvBatcher
}

func (k batchingKV) Get(ctx context.Context, req *pb.GetRequest, _ ...grpc.CallOption) (*pb.GetResponse, error) {
	res, err := k.b.Do(ctx, &pb.BatchItem{Request: &pb.BatchItem_Get{Get: req}})
	return res.GetGet(), err
}

func (k batchingKV) Put(ctx context.Context, req *pb.PutRequest, _ ...grpc.CallOption) (*pb.PutResponse, error) {
	res, err := k.b.Do(ctx, &pb.BatchItem{Request: &pb.BatchItem_Put{Put: req}})
	return res.GetPut(), err
}

func (k batchingKV) Delete(ctx context.Context, req *pb.DeleteRequest, _ ...grpc.CallOption) (*pb.DeleteResponse, error) {
	res, err := k.b.Do(ctx, &pb.BatchItem{Request: &pb.BatchItem_Delete{Delete: req}})
	return res.GetDelete(), err
}

func (k batchingKV) Txn(ctx context.Context, req *pb.TxnRequest, _ ...grpc.CallOption) (*pb.TxnResponse, error) {
	res, err := k.b.Do(ctx, &pb.BatchItem{Request: &pb.BatchItem_Txn{Txn: req}})
	return res.GetTxn(), err
}

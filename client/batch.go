package client

import (
	"context"
	"sync"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Requests that many goroutines send to the same node at the same time
// travel together in one KV.Batch call (as TiKV's client batches commands):
// an RPC costs the client and the node far more CPU (HTTP/2 frames, a
// stream, system calls) than a small put itself, so a busy client pays it
// once for many requests. No request waits for a batch to fill: a request
// goes out at once while fewer than maxBatchesInFlight calls to its node
// are outstanding, and otherwise joins the next batch, which leaves as
// soon as one of those calls returns. A lone caller therefore sees plain
// Get, Put and Delete calls, and a batch only forms where requests queue
// anyway.
//
// Each request in a batch is still its own operation: the node runs them
// in parallel, each with its own deadline, and each succeeds or fails
// alone with the status its own call would have had (routing errors
// included), so retries and the range cache work as for single calls.

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

// batcher sends one node's Get, Put and Delete requests, batching those
// that arrive while the node is busy with earlier calls.
type batcher struct {
	kv    pb.KVClient
	stats *stats

	mu struct {
		sync.Mutex
		queue    []*batchCall
		inFlight int
	}
}

// batchCall is one request waiting for its result.
type batchCall struct {
	ctx  context.Context
	item *pb.BatchItem
	size int // bytes of keys and values, to bound the batch
	done chan struct{}
	res  *pb.BatchResult
	err  error // the call or batch failed as a whole
}

func newBatcher(kv pb.KVClient, st *stats) *batcher {
	return &batcher{kv: kv, stats: st}
}

// do sends one request, alone or in a batch, and returns its result.
func (b *batcher) do(ctx context.Context, item *pb.BatchItem, size int) (*pb.BatchResult, error) {
	c := &batchCall{ctx: ctx, item: item, size: size}
	b.mu.Lock()
	if b.mu.inFlight < maxBatchesInFlight {
		// The queue is empty here: it only grows while every slot is busy,
		// and a slot that frees takes it.
		b.mu.inFlight++
		b.mu.Unlock()
		b.send([]*batchCall{c})
		b.next()
		return c.res, c.err
	}
	c.done = make(chan struct{})
	b.mu.queue = append(b.mu.queue, c)
	b.mu.Unlock()
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		// The batch may still run the request: like a cancelled call, the
		// outcome of a write is then unknown.
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// next hands the slot just freed to the queued requests, if any: a
// goroutine sends them as one batch and keeps the slot while more queue.
func (b *batcher) next() {
	batch := b.take()
	if batch == nil {
		return
	}
	go func() {
		for batch != nil {
			b.send(batch)
			for _, c := range batch {
				close(c.done)
			}
			batch = b.take()
		}
	}()
}

// take removes the next batch from the queue, or releases the caller's
// slot and returns nil when nothing is queued.
func (b *batcher) take() []*batchCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.mu.queue) == 0 {
		b.mu.inFlight--
		return nil
	}
	var batch []*batchCall
	n, bytes := 0, 0
	for ; n < len(b.mu.queue) && len(batch) < maxBatchItems; n++ {
		c := b.mu.queue[n]
		if c.ctx.Err() != nil {
			continue // its caller has given up and returned
		}
		if bytes += c.size; len(batch) > 0 && bytes > maxBatchBytes {
			break
		}
		batch = append(batch, c)
	}
	b.mu.queue = append(b.mu.queue[:0], b.mu.queue[n:]...)
	if len(batch) == 0 {
		b.mu.inFlight--
		return nil
	}
	return batch
}

// send runs a batch and sets each call's result. One request goes as its
// own call, with its caller's context.
func (b *batcher) send(batch []*batchCall) {
	if len(batch) == 1 {
		c := batch[0]
		c.res, c.err = b.single(c.ctx, c.item)
		return
	}
	// The batch must not end with any one caller's context: it carries
	// the others' requests too. It lasts until the latest deadline, and
	// each item carries its own.
	var latest time.Time
	req := &pb.BatchRequest{Items: make([]*pb.BatchItem, len(batch))}
	now := time.Now()
	for i, c := range batch {
		if d, ok := c.ctx.Deadline(); ok {
			c.item.TimeoutMicros = max(d.Sub(now).Microseconds(), 1)
			if d.After(latest) {
				latest = d
			}
		}
		req.Items[i] = c.item
	}
	ctx := context.Background()
	if !latest.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, latest)
		defer cancel()
	}
	b.stats.batches.Add(1)
	b.stats.batchedRequests.Add(int64(len(batch)))
	resp, err := b.kv.Batch(ctx, req)
	if err == nil && len(resp.Results) != len(batch) {
		err = status.Errorf(codes.Internal, "client: batch of %d requests got %d results", len(batch), len(resp.Results))
	}
	for i, c := range batch {
		if err != nil {
			c.err = err
			continue
		}
		c.res = resp.Results[i]
		if e := c.res.GetError(); e != nil {
			c.res, c.err = nil, status.ErrorProto(&spb.Status{Code: e.Code, Message: e.Message, Details: e.Details})
		}
	}
}

// single sends one request as a plain call.
func (b *batcher) single(ctx context.Context, item *pb.BatchItem) (*pb.BatchResult, error) {
	switch r := item.Request.(type) {
	case *pb.BatchItem_Get:
		resp, err := b.kv.Get(ctx, r.Get)
		return &pb.BatchResult{Result: &pb.BatchResult_Get{Get: resp}}, err
	case *pb.BatchItem_Put:
		resp, err := b.kv.Put(ctx, r.Put)
		return &pb.BatchResult{Result: &pb.BatchResult_Put{Put: resp}}, err
	case *pb.BatchItem_Delete:
		resp, err := b.kv.Delete(ctx, r.Delete)
		return &pb.BatchResult{Result: &pb.BatchResult_Delete{Delete: resp}}, err
	}
	return nil, status.Errorf(codes.Internal, "client: batch item without a request")
}

// batchingKV is the KV API of one node with Get, Put and Delete sent
// through its batcher; the other calls go straight to the node.
type batchingKV struct {
	pb.KVClient
	b *batcher
}

func (k batchingKV) Get(ctx context.Context, req *pb.GetRequest, _ ...grpc.CallOption) (*pb.GetResponse, error) {
	res, err := k.b.do(ctx, &pb.BatchItem{Request: &pb.BatchItem_Get{Get: req}}, len(req.Key))
	return res.GetGet(), err
}

func (k batchingKV) Put(ctx context.Context, req *pb.PutRequest, _ ...grpc.CallOption) (*pb.PutResponse, error) {
	res, err := k.b.do(ctx, &pb.BatchItem{Request: &pb.BatchItem_Put{Put: req}}, len(req.Key)+len(req.Value)+len(req.ExpectedValue))
	return res.GetPut(), err
}

func (k batchingKV) Delete(ctx context.Context, req *pb.DeleteRequest, _ ...grpc.CallOption) (*pb.DeleteResponse, error) {
	res, err := k.b.do(ctx, &pb.BatchItem{Request: &pb.BatchItem_Delete{Delete: req}}, len(req.Key))
	return res.GetDelete(), err
}

package client

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// heldKV answers puts and batches of puts: a put of key "fail-N" fails
// with a routing error naming leader N, any other put succeeds with a mod
// revision equal to the value's length. Calls wait on hold until it is
// closed, so a test can keep every slot of a batcher busy.
type heldKV struct {
	pb.KVClient
	hold chan struct{}

	mu      sync.Mutex
	singles int
	batches [][]*pb.BatchItem
}

func (f *heldKV) answer(req *pb.PutRequest) (*pb.PutResponse, error) {
	var leader uint64
	if _, err := fmt.Sscanf(string(req.Key), "fail-%d", &leader); err == nil {
		st, _ := status.New(codes.Unavailable, "not the leader").WithDetails(&pb.RoutingError{LeaderNodeId: leader})
		return nil, st.Err()
	}
	return &pb.PutResponse{Kv: &pb.KeyValue{Key: req.Key, ModRevision: int64(len(req.Value))}}, nil
}

func (f *heldKV) Put(ctx context.Context, req *pb.PutRequest, _ ...grpc.CallOption) (*pb.PutResponse, error) {
	f.mu.Lock()
	f.singles++
	f.mu.Unlock()
	<-f.hold
	return f.answer(req)
}

func (f *heldKV) Batch(ctx context.Context, req *pb.BatchRequest, _ ...grpc.CallOption) (*pb.BatchResponse, error) {
	f.mu.Lock()
	f.batches = append(f.batches, req.Items)
	f.mu.Unlock()
	<-f.hold
	resp := &pb.BatchResponse{}
	for _, it := range req.Items {
		p, err := f.answer(it.GetPut())
		if err != nil {
			st := status.Convert(err).Proto()
			resp.Results = append(resp.Results, &pb.BatchResult{Result: &pb.BatchResult_Error{Error: &pb.Status{Code: st.Code, Message: st.Message, Details: st.Details}}})
			continue
		}
		resp.Results = append(resp.Results, &pb.BatchResult{Result: &pb.BatchResult_Put{Put: p}})
	}
	return resp, nil
}

func (f *heldKV) calls() (singles int, batches [][]*pb.BatchItem) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.singles, append([][]*pb.BatchItem(nil), f.batches...)
}

// TestRequestsQueuedBehindBusySlotsGoAsOneBatch fills the batcher's slots
// with single puts held by the node, queues more puts behind them, and
// checks that the queued ones leave together in one Batch call once a slot
// frees, and that every caller gets its own answer: its revision, or its
// routing error with the leader hint intact.
func TestRequestsQueuedBehindBusySlotsGoAsOneBatch(t *testing.T) {
	f := &heldKV{hold: make(chan struct{})}
	var st stats
	kv := batchingKV{KVClient: f, b: newBatcher(f, &st)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	type answer struct {
		resp *pb.PutResponse
		err  error
	}
	answers := make([]answer, maxBatchesInFlight+10)
	var wg sync.WaitGroup
	put := func(i int, key string) {
		defer wg.Done()
		resp, err := kv.Put(ctx, &pb.PutRequest{Key: []byte(key), Value: make([]byte, i)})
		answers[i] = answer{resp, err}
	}
	keyOf := func(i int) string {
		if i == maxBatchesInFlight+3 {
			return "fail-7"
		}
		return fmt.Sprintf("k%d", i)
	}
	for i := 0; i < maxBatchesInFlight; i++ {
		wg.Add(1)
		go put(i, keyOf(i))
	}
	waitUntil(t, func() bool { s, _ := f.calls(); return s == maxBatchesInFlight })
	for i := maxBatchesInFlight; i < len(answers); i++ {
		wg.Add(1)
		go put(i, keyOf(i))
	}
	waitUntil(t, func() bool { return kv.b.Queued() == 10 })
	if s, b := f.calls(); s != maxBatchesInFlight || len(b) != 0 {
		t.Fatalf("with every slot busy: %d single calls and %d batches, want %d and 0", s, len(b), maxBatchesInFlight)
	}
	close(f.hold)
	wg.Wait()

	singles, batches := f.calls()
	if singles != maxBatchesInFlight || len(batches) != 1 || len(batches[0]) != 10 {
		t.Fatalf("%d single calls and batches of sizes %v; want %d singles and one batch of 10", singles, batchSizes(batches), maxBatchesInFlight)
	}
	for i, a := range answers {
		if keyOf(i) == "fail-7" {
			re := routingErrorOf(a.err)
			if status.Code(a.err) != codes.Unavailable || re == nil || re.LeaderNodeId != 7 {
				t.Errorf("put %d: got %v, want Unavailable with a routing error naming leader 7", i, a.err)
			}
			continue
		}
		if a.err != nil || string(a.resp.Kv.Key) != keyOf(i) || a.resp.Kv.ModRevision != int64(i) {
			t.Errorf("put %d: got %v, %v; want key %s revision %d", i, a.resp, a.err, keyOf(i), i)
		}
	}
	if b, r := st.batches.Load(), st.batchedRequests.Load(); b != 1 || r != 10 {
		t.Errorf("stats: %d batches of %d requests, want 1 of 10", b, r)
	}
}

// TestQueuedCallerThatGivesUpReturnsAtOnce: a request queued behind busy
// slots returns when its context ends, and is not sent afterwards.
func TestQueuedCallerThatGivesUpReturnsAtOnce(t *testing.T) {
	f := &heldKV{hold: make(chan struct{})}
	kv := batchingKV{KVClient: f, b: newBatcher(f, &stats{})}
	var wg sync.WaitGroup
	for i := 0; i < maxBatchesInFlight; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kv.Put(context.Background(), &pb.PutRequest{Key: []byte("busy")})
		}()
	}
	waitUntil(t, func() bool { s, _ := f.calls(); return s == maxBatchesInFlight })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("late")}); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("queued put whose deadline passed: %v, want DeadlineExceeded", err)
	}
	close(f.hold)
	wg.Wait()
	if s, b := f.calls(); s != maxBatchesInFlight || len(b) != 0 {
		t.Errorf("after the slots freed: %d single calls and batches %v; the late put must not be sent", s, batchSizes(b))
	}
}

func batchSizes(batches [][]*pb.BatchItem) []int {
	var n []int
	for _, b := range batches {
		n = append(n, len(b))
	}
	return n
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

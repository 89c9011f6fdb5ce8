package node_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// TestSplitUnderConcurrentWrites splits a range while writers hammer it.
// Every acknowledged write must be readable afterwards, the keys right of
// the split must be served by the new range, and revisions keep increasing
// across the split.
func TestSplitUnderConcurrentWrites(t *testing.T) {
	c, ctx := startCluster(t, 2)
	all := []uint64{1, 2, 3}
	// Range 1 is ["", 0x8000). Split it at "\x40" while writing on both sides.
	split := []byte{0x40}
	var mu sync.Mutex
	acked := map[string]string{}
	writeCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; writeCtx.Err() == nil; i++ {
				key := fmt.Sprintf("%c-w%d-%04d", []byte{0x20, 0x30, 0x50, 0x60}[w], w, i)
				val := fmt.Sprint(i)
				actx, cancel := context.WithTimeout(writeCtx, 3*time.Second)
				_, err := c.KV(uint64(w%3+1)).Put(actx, &pb.PutRequest{Key: []byte(key), Value: []byte(val)})
				cancel()
				if err == nil {
					mu.Lock()
					acked[key] = val
					mu.Unlock()
				}
			}
		}(w)
	}
	time.Sleep(300 * time.Millisecond)
	before, err := c.KV(1).Put(ctx, &pb.PutRequest{Key: []byte("\x50marker"), Value: []byte("before")})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Admin(2).SplitRange(ctx, &pb.SplitRangeRequest{Key: split})
	if err != nil {
		t.Fatalf("split: %v", err)
	}
	if string(resp.Left.EndKey) != string(split) || string(resp.Right.StartKey) != string(split) || resp.Right.RangeId <= 2 {
		t.Fatalf("split descriptors: left %v right %v", resp.Left, resp.Right)
	}
	time.Sleep(300 * time.Millisecond)
	stop()
	wg.Wait()

	// Splitting at an existing boundary is refused and changes nothing.
	if _, err := c.Admin(1).SplitRange(ctx, &pb.SplitRangeRequest{Key: split}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("second split at the same key: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 20 {
		t.Fatalf("only %d writes acknowledged", len(acked))
	}
	for k, v := range acked {
		g, err := getRetry(ctx, c, all, []byte(k))
		if err != nil || !g.Found || string(g.Kv.Value) != v {
			t.Fatalf("acknowledged %q=%q: got %v, %v", k, v, g, err)
		}
		wantRange := uint64(1)
		if k >= string(split) {
			wantRange = resp.Right.RangeId
		}
		if g.Header.RangeId != wantRange {
			t.Fatalf("%q served by range %d, want %d", k, g.Header.RangeId, wantRange)
		}
	}
	after, err := c.KV(3).Put(ctx, &pb.PutRequest{Key: []byte("\x50marker"), Value: []byte("after")})
	if err != nil || after.Kv.ModRevision <= before.Kv.ModRevision || after.Header.RangeId != resp.Right.RangeId {
		t.Fatalf("write after split: %v, %v (before: %v)", after, err, before.Kv)
	}
	// Every node holds the new range.
	for _, id := range all {
		rangeInfo(t, ctx, c, id, resp.Right.RangeId)
	}
}

func TestUsersCannotTouchSystemKeys(t *testing.T) {
	c, ctx := startCluster(t, 2)
	_, err := c.KV(1).Put(ctx, &pb.PutRequest{Key: []byte("\xff\xffsystem/next-range-id"), Value: []byte("1")})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("put of a system key: %v", err)
	}
	resp, err := c.KV(1).Scan(ctx, &pb.ScanRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 0 {
		t.Fatalf("a user scan shows system keys: %v", resp.Kvs)
	}
}

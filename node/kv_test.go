package node_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftrix/raftrixdb/internal/testcluster"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

func startCluster(t *testing.T, ranges int) (*testcluster.Cluster, context.Context) {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, InitialRanges: ranges})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	if _, err := c.WaitLeaders(ctx); err != nil {
		t.Fatal(err)
	}
	return c, ctx
}

func i64(v int64) *int64 { return &v }

func TestBadInputIsRejectedAndChangesNothing(t *testing.T) {
	c, ctx := startCluster(t, 4)
	kv := c.KV(1)
	if _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("orig")}); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 4<<10+1)
	cases := []struct {
		name string
		call func() error
		msg  string
	}{
		{"empty key put", func() error { _, err := kv.Put(ctx, &pb.PutRequest{Value: []byte("v")}); return err }, "key must not be empty"},
		{"empty key get", func() error { _, err := kv.Get(ctx, &pb.GetRequest{}); return err }, "key must not be empty"},
		{"empty key delete", func() error { _, err := kv.Delete(ctx, &pb.DeleteRequest{}); return err }, "key must not be empty"},
		{"key too large", func() error { _, err := kv.Put(ctx, &pb.PutRequest{Key: big, Value: []byte("v")}); return err }, "key is 4097 bytes; the limit is 4096"},
		{"value too large", func() error {
			_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 1<<20+1)})
			return err
		}, "value is 1048577 bytes; the limit is 1048576"},
		{"negative expected revision", func() error {
			_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v"), ExpectedModRevision: i64(-1)})
			return err
		}, "expected_mod_revision must not be negative"},
		{"if_absent with expected value", func() error {
			_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v"), IfAbsent: true, ExpectedValue: []byte("orig")})
			return err
		}, "if_absent and expected_value cannot both be set"},
		{"scan start after end", func() error {
			_, err := kv.Scan(ctx, &pb.ScanRequest{Start: []byte("b"), End: []byte("a")})
			return err
		}, `scan start "b" must sort before end "a"`},
		{"scan negative limit", func() error { _, err := kv.Scan(ctx, &pb.ScanRequest{Limit: -1}); return err }, "limit must not be negative"},
		{"scan limit too large", func() error { _, err := kv.Scan(ctx, &pb.ScanRequest{Limit: 1 << 30}); return err }, "over the maximum of 10000"},
		{"malformed continuation", func() error {
			_, err := kv.Scan(ctx, &pb.ScanRequest{Continuation: []byte{9, 'a'}})
			return err
		}, "malformed continuation token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Fatalf("got %v; want InvalidArgument containing %q", err, tc.msg)
			}
		})
	}
	resp, err := kv.Get(ctx, &pb.GetRequest{Key: []byte("k")})
	if err != nil || string(resp.Kv.Value) != "orig" || resp.Kv.Version != 1 {
		t.Fatalf("key changed by rejected requests: %v, %v", resp, err)
	}
}

func TestConditionalWritesAndRevisions(t *testing.T) {
	c, ctx := startCluster(t, 4)
	kv := c.KV(2)
	key := []byte("cas")
	p1, err := kv.Put(ctx, &pb.PutRequest{Key: key, Value: []byte("a"), IfAbsent: true})
	if err != nil {
		t.Fatal(err)
	}
	if p1.Kv.Version != 1 || p1.Kv.CreateRevision != p1.Kv.ModRevision {
		t.Fatalf("first put: %v", p1.Kv)
	}
	_, err = kv.Put(ctx, &pb.PutRequest{Key: key, Value: []byte("b"), IfAbsent: true})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("if_absent on existing key: %v", err)
	}
	_, err = kv.Put(ctx, &pb.PutRequest{Key: key, Value: []byte("b"), ExpectedModRevision: i64(p1.Kv.ModRevision + 1)})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("CAS with wrong revision: %v", err)
	}
	p2, err := kv.Put(ctx, &pb.PutRequest{Key: key, Value: []byte("b"), ExpectedModRevision: i64(p1.Kv.ModRevision), PrevKv: true})
	if err != nil {
		t.Fatal(err)
	}
	if p2.Kv.ModRevision <= p1.Kv.ModRevision || p2.Kv.CreateRevision != p1.Kv.CreateRevision || p2.Kv.Version != 2 {
		t.Fatalf("CAS put revisions: before %v after %v", p1.Kv, p2.Kv)
	}
	if string(p2.PrevKv.GetValue()) != "a" {
		t.Fatalf("prev kv: %v", p2.PrevKv)
	}
	if _, err := kv.Put(ctx, &pb.PutRequest{Key: key, Value: []byte("c"), ExpectedValue: []byte("zzz")}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("compare on value: %v", err)
	}
	if _, err := kv.Put(ctx, &pb.PutRequest{Key: key, Value: []byte("c"), ExpectedValue: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	d, err := kv.Delete(ctx, &pb.DeleteRequest{Key: key, PrevKv: true})
	if err != nil || !d.Deleted || string(d.PrevKv.GetValue()) != "c" {
		t.Fatalf("delete: %v, %v", d, err)
	}
	g, err := c.KV(3).Get(ctx, &pb.GetRequest{Key: key})
	if err != nil || g.Found {
		t.Fatalf("get after delete: %v, %v", g, err)
	}
	// Recreated: a new create revision, version back to 1, and the mod
	// revision still above every earlier one.
	p3, err := kv.Put(ctx, &pb.PutRequest{Key: key, Value: []byte("d"), ExpectedModRevision: i64(0)})
	if err != nil {
		t.Fatal(err)
	}
	if p3.Kv.Version != 1 || p3.Kv.CreateRevision <= p2.Kv.ModRevision {
		t.Fatalf("recreated key: %v", p3.Kv)
	}
}

func TestScanAcrossRangesWithContinuation(t *testing.T) {
	const ranges = 16
	c, ctx := startCluster(t, ranges)
	var want []string
	for i := 0; i < ranges; i++ {
		for j := 0; j < 3; j++ {
			key := keyInRange(i, ranges, fmt.Sprintf("-%d", j))
			if _, err := c.KV(1).Put(ctx, &pb.PutRequest{Key: key, Value: []byte{byte(j)}}); err != nil {
				t.Fatal(err)
			}
			want = append(want, string(key))
		}
	}
	for _, limit := range []int64{0, 1, 5, 7} {
		var got []string
		req := &pb.ScanRequest{Limit: limit}
		for pages := 0; ; pages++ {
			if pages > 100 {
				t.Fatal("scan does not terminate")
			}
			resp, err := c.KV(3).Scan(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if limit > 0 && int64(len(resp.Kvs)) > limit {
				t.Fatalf("page of %d keys over limit %d", len(resp.Kvs), limit)
			}
			for _, kv := range resp.Kvs {
				got = append(got, string(kv.Key))
			}
			if len(resp.Continuation) == 0 {
				break
			}
			req.Continuation = resp.Continuation
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("limit %d: scan got %d keys %q, want %d", limit, len(got), got, len(want))
		}
	}
	// A bounded scan over the middle ranges, keys only.
	start, end := keyInRange(3, ranges, ""), keyInRange(6, ranges, "-1")
	resp, err := c.KV(2).Scan(ctx, &pb.ScanRequest{Start: start, End: end, KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 3*3+1 || resp.Kvs[0].Value != nil || len(resp.Continuation) != 0 {
		t.Fatalf("bounded scan: %d keys, continuation %q", len(resp.Kvs), resp.Continuation)
	}
}

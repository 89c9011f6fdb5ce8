package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// fakeKV answers every request with err, or with success when err is nil,
// and counts the requests it received.
type fakeKV struct {
	pb.UnimplementedKVServer
	err        error
	puts, gets atomic.Int32
}

func (f *fakeKV) Put(context.Context, *pb.PutRequest) (*pb.PutResponse, error) {
	f.puts.Add(1)
	if f.err != nil {
		return nil, f.err
	}
	return &pb.PutResponse{Kv: &pb.KeyValue{ModRevision: 7, Version: 1}}, nil
}

func (f *fakeKV) Get(_ context.Context, req *pb.GetRequest) (*pb.GetResponse, error) {
	f.gets.Add(1)
	if f.err != nil {
		return nil, f.err
	}
	return &pb.GetResponse{Found: true, Kv: &pb.KeyValue{Key: req.Key, Value: []byte("v")}}, nil
}

func startFake(t *testing.T, f *fakeKV) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	pb.RegisterKVServer(s, f)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func routingStatus(code codes.Code, msg string) error {
	st, err := status.New(code, msg).WithDetails(&pb.RoutingError{Reason: pb.RoutingError_NO_LEADER, RangeId: 1})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

// TestWriteRetryOnlyWhenSurelyNotApplied checks the one rule that keeps a
// retried Put from applying twice, with fake nodes that count requests.
func TestWriteRetryOnlyWhenSurelyNotApplied(t *testing.T) {
	for _, tc := range []struct {
		name            string
		firstErr        error
		putCode         int
		putRetried      bool // the put reached the second node
		getCode         int
		getRetried      bool
		wantPutErrorMsg string
	}{
		{
			name:     "unavailable without routing detail",
			firstErr: status.Error(codes.Unavailable, "error reading from server: EOF"),
			putCode:  exitUnavailable, putRetried: false, wantPutErrorMsg: "error reading from server: EOF",
			getCode: exitOK, getRetried: true,
		},
		{
			name:     "unavailable with routing detail",
			firstErr: routingStatus(codes.Unavailable, "range 1 has no leader"),
			putCode:  exitOK, putRetried: true,
			getCode: exitOK, getRetried: true,
		},
		{
			name:     "failed precondition with routing detail",
			firstErr: routingStatus(codes.FailedPrecondition, "wrong range"),
			putCode:  exitOK, putRetried: true,
			getCode: exitOK, getRetried: true,
		},
		{
			name:     "compare failed",
			firstErr: status.Error(codes.FailedPrecondition, "compare failed: key exists"),
			putCode:  exitCompareFailed, putRetried: false, wantPutErrorMsg: "compare failed: key exists",
			getCode: exitCompareFailed, getRetried: false,
		},
		{
			name:     "deadline exceeded on the server",
			firstErr: status.Error(codes.DeadlineExceeded, "request timed out; a write may or may not have been applied"),
			putCode:  exitUnavailable, putRetried: false, wantPutErrorMsg: "request timed out",
			getCode: exitUnavailable, getRetried: false,
		},
		{
			name:     "internal error",
			firstErr: status.Error(codes.Internal, "boom"),
			putCode:  exitError, putRetried: false, wantPutErrorMsg: "boom",
			getCode: exitError, getRetried: false,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first, second := &fakeKV{err: tc.firstErr}, &fakeKV{}
			eps := "--endpoints=" + startFake(t, first) + "," + startFake(t, second)
			out, errOut, code := runCLI(t, "kv", "put", "k", "v", eps)
			if code != tc.putCode || (second.puts.Load() == 1) != tc.putRetried || first.puts.Load() != 1 {
				t.Fatalf("put: exit %d (want %d), puts %d then %d (retry wanted: %t); stdout %q stderr %q",
					code, tc.putCode, first.puts.Load(), second.puts.Load(), tc.putRetried, out, errOut)
			}
			if tc.wantPutErrorMsg != "" && !strings.HasPrefix(errOut, "Error: "+tc.wantPutErrorMsg) {
				t.Fatalf("put: stderr %q, want the server's message %q", errOut, tc.wantPutErrorMsg)
			}
			_, errOut, code = runCLI(t, "kv", "get", "k", eps)
			if code != tc.getCode || (second.gets.Load() == 1) != tc.getRetried {
				t.Fatalf("get: exit %d (want %d), gets %d then %d (retry wanted: %t); stderr %q",
					code, tc.getCode, first.gets.Load(), second.gets.Load(), tc.getRetried, errOut)
			}
		})
	}
}

func TestRetriesUntilTimeout(t *testing.T) {
	a := &fakeKV{err: routingStatus(codes.Unavailable, "range 1 has no leader")}
	b := &fakeKV{err: routingStatus(codes.Unavailable, "range 1 has no leader")}
	eps := "--endpoints=" + startFake(t, a) + "," + startFake(t, b)
	expectFail(t, exitUnavailable, "timed out after 300ms: range 1 has no leader", "kv", "put", "k", "v", eps, "--timeout=300ms")
	if a.puts.Load() < 2 || b.puts.Load() < 2 {
		t.Fatalf("refused puts were not retried until the timeout: %d and %d attempts", a.puts.Load(), b.puts.Load())
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, exitOK},
		{fmt.Errorf("open engine: %w", context.Canceled), exitError},
		{usagef("bad"), exitUsage},
		{&notFoundError{key: []byte("k")}, exitNotFound},
		{&unreachableError{msg: "x"}, exitUnavailable},
		{&codedError{code: 4, msg: "x"}, 4},
		{status.Error(codes.InvalidArgument, "x"), exitUsage},
		{status.Error(codes.NotFound, "x"), exitNotFound},
		{status.Error(codes.FailedPrecondition, "x"), exitCompareFailed},
		{routingStatus(codes.FailedPrecondition, "x"), exitUnavailable},
		{status.Error(codes.Unavailable, "x"), exitUnavailable},
		{status.Error(codes.DeadlineExceeded, "x"), exitUnavailable},
		{status.Error(codes.Internal, "x"), exitError},
		{context.DeadlineExceeded, exitUnavailable},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	if got := errorMessage(status.Error(codes.InvalidArgument, "key must not be empty\nreally")); got != "key must not be empty really" {
		t.Errorf("errorMessage = %q", got)
	}
}

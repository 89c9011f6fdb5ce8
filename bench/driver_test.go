package bench

import (
	"context"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

func TestOpenDriverRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  DriverConfig
	}{
		{"mongo", DriverConfig{Endpoints: []string{"127.0.0.1:1"}}},
		{DriverRaftrix, DriverConfig{}},
		{DriverEtcd, DriverConfig{Endpoints: []string{"127.0.0.1:1"}, Conns: -1}},
	} {
		if d, err := OpenDriver(tc.name, tc.cfg); err == nil {
			d.Close()
			t.Errorf("OpenDriver(%q, %+v) succeeded", tc.name, tc.cfg)
		}
	}
}

// With nothing listening, both drivers fail fast with a gRPC code the
// report can name, and WaitReady gives up when told to.
func TestDriversReportUnreachableStore(t *testing.T) {
	for _, name := range []string{DriverRaftrix, DriverEtcd} {
		d, err := OpenDriver(name, DriverConfig{Endpoints: []string{"127.0.0.1:1", "127.0.0.1:2"}, Conns: 3, DialTimeout: time.Second})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, _, err = d.Get(ctx, []byte("k"))
		cancel()
		if code := errorCode(err); code != "Unavailable" && code != "DeadlineExceeded" {
			t.Errorf("%s: Get from nowhere: %v (code %s)", name, err, code)
		}
		if err := WaitReady(context.Background(), d, 300*time.Millisecond); err == nil {
			t.Errorf("%s: WaitReady succeeded with no store", name)
		}
		if err := d.Close(); err != nil {
			t.Errorf("%s: close: %v", name, err)
		}
	}
}

func TestErrorCodeOfEtcdErrors(t *testing.T) {
	for err, want := range map[error]string{
		rpctypes.ErrNoLeader:            "Unavailable",
		rpctypes.ErrGRPCNoLeader:        "Unavailable",
		rpctypes.ErrTimeout:             "Unavailable",
		rpctypes.ErrKeyNotFound:         "InvalidArgument",
		rpctypes.ErrGRPCRequestTooLarge: "InvalidArgument",
	} {
		if got := errorCode(err); got != want {
			t.Errorf("errorCode(%v) = %s, want %s", err, got, want)
		}
	}
}

// A failed compare and a routing refusal share FailedPrecondition; only
// the first is a conflict.
func TestCompareFailedIsNotARoutingError(t *testing.T) {
	if !isCompareFailed(status.Error(codes.FailedPrecondition, "mod revision is 7, expected 5")) {
		t.Error("a plain FailedPrecondition is a failed compare")
	}
	st, err := status.New(codes.FailedPrecondition, "wrong range").WithDetails(&pb.RoutingError{Reason: pb.RoutingError_WRONG_RANGE})
	if err != nil {
		t.Fatal(err)
	}
	if isCompareFailed(st.Err()) {
		t.Error("a routing error was taken for a failed compare")
	}
	if isCompareFailed(status.Error(codes.Unavailable, "no leader")) || isCompareFailed(nil) {
		t.Error("other outcomes taken for a failed compare")
	}
}

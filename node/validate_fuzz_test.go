package node

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// Fuzz tests of request validation: whatever a client sends, validation
// never panics, refuses only with an InvalidArgument error, and every
// request it accepts satisfies the limits. The seeds run with go test; a
// short fuzzing run of one target:
//
//	go test ./node -run XXX -fuzz FuzzValidatePut -fuzztime 10s

// fuzzLimits are small, so that random inputs fall on both sides of each.
var fuzzLimits = Limits{
	MaxKeySize: 8, MaxValueSize: 16, DefaultScanLimit: 5, MaxScanLimit: 10,
	MaxTxnOps: 6, MaxTxnBytes: 40,
}

// checkRefusal fails unless err is nil or the InvalidArgument error.
func checkRefusal(t *testing.T, err error) bool {
	t.Helper()
	if err == nil {
		return false
	}
	var inv *invalidArgumentError
	if !errors.As(err, &inv) || inv.msg == "" {
		t.Fatalf("refused with %T %v, want an invalidArgumentError with a message", err, err)
	}
	return true
}

// checkAcceptedKey fails if an accepted request carries a key the limits
// refuse.
func checkAcceptedKey(t *testing.T, key []byte) {
	t.Helper()
	if len(key) == 0 || len(key) > fuzzLimits.MaxKeySize {
		t.Fatalf("accepted a key of %d bytes (limit %d)", len(key), fuzzLimits.MaxKeySize)
	}
}

func FuzzValidatePut(f *testing.F) {
	f.Add([]byte("k"), []byte("v"), false, int64(0), false, false, []byte(nil))
	f.Add([]byte(""), []byte("v"), false, int64(0), false, false, []byte(nil))
	f.Add([]byte("123456789"), []byte("v"), false, int64(0), false, false, []byte(nil))
	f.Add([]byte("k"), bytes.Repeat([]byte("v"), 17), false, int64(0), false, false, []byte(nil))
	f.Add([]byte("k"), []byte("v"), true, int64(-1), false, false, []byte(nil))
	f.Add([]byte("k"), []byte("v"), true, int64(3), true, false, []byte(nil))
	f.Add([]byte("k"), []byte("v"), false, int64(0), true, true, []byte("old"))
	f.Fuzz(func(t *testing.T, key, value []byte, hasExpRev bool, expRev int64, ifAbsent, hasExpValue bool, expValue []byte) {
		req := &pb.PutRequest{Key: key, Value: value, IfAbsent: ifAbsent}
		if hasExpRev {
			req.ExpectedModRevision = &expRev
		}
		if hasExpValue {
			req.ExpectedValue = append([]byte{}, expValue...)
		}
		if checkRefusal(t, fuzzLimits.validatePut(req)) {
			return
		}
		checkAcceptedKey(t, key)
		switch {
		case len(value) > fuzzLimits.MaxValueSize:
			t.Fatalf("accepted a value of %d bytes", len(value))
		case hasExpRev && expRev < 0:
			t.Fatalf("accepted expected_mod_revision %d", expRev)
		case ifAbsent && hasExpValue:
			t.Fatal("accepted if_absent with expected_value")
		case ifAbsent && hasExpRev && expRev != 0:
			t.Fatalf("accepted if_absent with expected_mod_revision %d", expRev)
		}
	})
}

func FuzzValidateGetDelete(f *testing.F) {
	f.Add([]byte("k"), false, int64(0))
	f.Add([]byte(""), false, int64(0))
	f.Add([]byte("123456789"), true, int64(-5))
	f.Fuzz(func(t *testing.T, key []byte, hasExpRev bool, expRev int64) {
		if !checkRefusal(t, fuzzLimits.validateGet(&pb.GetRequest{Key: key})) {
			checkAcceptedKey(t, key)
		}
		req := &pb.DeleteRequest{Key: key}
		if hasExpRev {
			req.ExpectedModRevision = &expRev
		}
		if checkRefusal(t, fuzzLimits.validateDelete(req)) {
			return
		}
		checkAcceptedKey(t, key)
		if hasExpRev && expRev < 0 {
			t.Fatalf("accepted a delete expecting revision %d", expRev)
		}
	})
}

// FuzzValidateScan covers the decoding of continuation tokens, which come
// back from clients as opaque bytes.
func FuzzValidateScan(f *testing.F) {
	f.Add([]byte("a"), []byte("z"), int64(0), []byte(nil))
	f.Add([]byte(""), []byte(""), int64(3), encodeContinuation([]byte("m")))
	f.Add([]byte("b"), []byte("a"), int64(0), []byte(nil))
	f.Add([]byte("a"), []byte("z"), int64(-1), []byte(nil))
	f.Add([]byte("a"), []byte("z"), int64(11), []byte(nil))
	f.Add([]byte("a"), []byte("z"), int64(0), []byte{continuationVersion})
	f.Add([]byte("a"), []byte("z"), int64(0), []byte{9, 'a'})
	f.Add([]byte("c"), []byte("z"), int64(0), encodeContinuation([]byte("b")))
	f.Add([]byte("a"), []byte("c"), int64(0), encodeContinuation([]byte("c")))
	f.Fuzz(func(t *testing.T, start, end []byte, limit int64, token []byte) {
		req := &pb.ScanRequest{Start: start, End: end, Limit: limit, Continuation: token}
		from, n, err := fuzzLimits.validateScan(req)
		if checkRefusal(t, err) {
			return
		}
		switch {
		case len(start) > fuzzLimits.MaxKeySize || len(end) > fuzzLimits.MaxKeySize:
			t.Fatalf("accepted bounds of %d and %d bytes", len(start), len(end))
		case len(end) > 0 && bytes.Compare(start, end) >= 0:
			t.Fatalf("accepted start %q not before end %q", start, end)
		case n <= 0 || n > fuzzLimits.MaxScanLimit:
			t.Fatalf("accepted limit %d became %d", limit, n)
		case limit > 0 && int64(n) != limit:
			t.Fatalf("limit %d became %d", limit, n)
		case bytes.Compare(from, start) < 0 || (len(end) > 0 && bytes.Compare(from, end) >= 0):
			t.Fatalf("scan of [%q, %q) would start at %q", start, end, from)
		case len(token) == 0 && !bytes.Equal(from, start):
			t.Fatalf("scan without a token starts at %q, not at start %q", from, start)
		case len(token) > 0 && !bytes.Equal(encodeContinuation(from), token):
			t.Fatalf("token %x decoded to %q, which encodes differently", token, from)
		}
	})
}

// FuzzValidateTxn decodes the request from protobuf bytes, as the gRPC
// server does, so the fuzzer reaches any shape of transaction.
func FuzzValidateTxn(f *testing.F) {
	put := func(k, v string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_Put{Put: &pb.PutRequest{Key: []byte(k), Value: []byte(v)}}}
	}
	get := func(k string, stale bool) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_Get{Get: &pb.GetRequest{Key: []byte(k), Stale: stale}}}
	}
	del := func(k string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_Delete{Delete: &pb.DeleteRequest{Key: []byte(k)}}}
	}
	rev := int64(1)
	for _, req := range []*pb.TxnRequest{
		{Success: []*pb.RequestOp{put("a", "1"), get("a", false), del("b")}},
		{Compare: []*pb.Compare{{Key: []byte("a"), Target: pb.Compare_VALUE, Value: []byte("x")}}, Success: []*pb.RequestOp{put("a", "2")}, Failure: []*pb.RequestOp{get("a", false)}},
		{Success: []*pb.RequestOp{put("a", "1"), put("a", "2")}},
		{Success: []*pb.RequestOp{get("a", true)}},
		{Success: []*pb.RequestOp{{}}},
		{Success: []*pb.RequestOp{put("", "1")}},
		{Success: []*pb.RequestOp{put("a", "0123456789abcdefg")}},
		{Success: []*pb.RequestOp{put("a", "1"), put("b", "1"), put("c", "1"), put("d", "1"), put("e", "1"), put("f", "1"), put("g", "1")}},
		{Success: []*pb.RequestOp{put("a", "0123456789abcdef"), put("b", "0123456789abcdef"), put("c", "0123456789")}},
		{Success: []*pb.RequestOp{{Request: &pb.RequestOp_Put{Put: &pb.PutRequest{Key: []byte("a"), IfAbsent: true}}}}},
		{Success: []*pb.RequestOp{{Request: &pb.RequestOp_Delete{Delete: &pb.DeleteRequest{Key: []byte("a"), ExpectedModRevision: &rev}}}}},
	} {
		data, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &pb.TxnRequest{}
		if proto.Unmarshal(data, req) != nil {
			return // the gRPC server refuses it before validation
		}
		if checkRefusal(t, fuzzLimits.validateTxn(req)) {
			return
		}
		if n := len(req.Compare) + len(req.Success) + len(req.Failure); n > fuzzLimits.MaxTxnOps {
			t.Fatalf("accepted %d compares and operations", n)
		}
		size := 0
		for _, c := range req.Compare {
			checkAcceptedKey(t, c.Key)
			size += len(c.Key) + len(c.Value)
		}
		for _, branch := range [][]*pb.RequestOp{req.Success, req.Failure} {
			written := map[string]bool{}
			for _, op := range branch {
				var key []byte
				switch r := op.Request.(type) {
				case *pb.RequestOp_Get:
					if r.Get.Stale {
						t.Fatal("accepted a stale get")
					}
					key = r.Get.Key
				case *pb.RequestOp_Put:
					if r.Put.IfAbsent || r.Put.ExpectedModRevision != nil || r.Put.ExpectedValue != nil {
						t.Fatal("accepted a conditional put")
					}
					if len(r.Put.Value) > fuzzLimits.MaxValueSize {
						t.Fatalf("accepted a value of %d bytes", len(r.Put.Value))
					}
					key = r.Put.Key
					size += len(r.Put.Value)
				case *pb.RequestOp_Delete:
					if r.Delete.ExpectedModRevision != nil {
						t.Fatal("accepted a conditional delete")
					}
					key = r.Delete.Key
				default:
					t.Fatalf("accepted an operation of type %T", op.Request)
				}
				checkAcceptedKey(t, key)
				size += len(key)
				if op.GetGet() == nil {
					if written[string(key)] {
						t.Fatalf("accepted two writes of %q in one branch", key)
					}
					written[string(key)] = true
				}
			}
		}
		if size > fuzzLimits.MaxTxnBytes {
			t.Fatalf("accepted %d bytes of keys and values", size)
		}
	})
}

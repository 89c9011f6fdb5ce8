package node

import (
	"bytes"
	"context"
	"fmt"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// The system key space: keys starting with 0xFF 0xFF are reserved for the
// cluster's own replicated state (for now, the range ID allocator; the
// placement service's state goes here too). Users cannot read or write
// them through the KV API.
var (
	systemPrefix      = []byte{0xff, 0xff}
	rangeIDCounterKey = []byte("\xff\xffsystem/next-range-id")
)

func isSystemKey(k []byte) bool { return bytes.HasPrefix(k, systemPrefix) }

// allocateRangeID returns a range ID never handed out before, by a
// compare-and-set loop on the replicated counter.
func (n *Node) allocateRangeID(ctx context.Context) (uint64, error) {
	ctx = ownRequest(ctx)
	kv := &kvServer{n: n, internal: true}
	for {
		resp, err := kv.Get(ctx, &pb.GetRequest{Key: rangeIDCounterKey})
		if err != nil {
			return 0, err
		}
		if !resp.Found {
			return 0, fmt.Errorf("range ID counter %q is missing", rangeIDCounterKey)
		}
		last, err := strconv.ParseUint(string(resp.Kv.Value), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("range ID counter: %w", err)
		}
		next := last + 1
		rev := resp.Kv.ModRevision
		_, err = kv.Put(ctx, &pb.PutRequest{Key: rangeIDCounterKey, Value: []byte(strconv.FormatUint(next, 10)), ExpectedModRevision: &rev})
		if status.Code(err) == codes.FailedPrecondition {
			continue // someone else allocated; read again
		}
		if err != nil {
			return 0, err
		}
		return next, nil
	}
}

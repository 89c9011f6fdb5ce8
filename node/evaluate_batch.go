package node

import (
	"context"
	"time"

	"google.golang.org/grpc"

	"github.com/raftrix/raftrixdb/internal/batch"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// A node's transaction coordinators send each participant range's
// commands (prepare, end, resolve, ...) to the node that leads it; under
// load many coordinators address the same node at once, so those commands
// travel together in Internal.EvaluateBatch calls, as clients' requests do
// in KV.Batch (internal/batch).

const (
	maxEvaluatesInFlight = 4
	maxEvaluateBatch     = 256
	maxEvaluateBytes     = 1 << 20
)

type evalBatcher = batch.Batcher[*pb.InternalRequest, *pb.InternalResponse]

// forwardEvaluate sends req to the node at the other end of conn, alone or
// in a batch; ctx is already marked as forwarded by this node.
func (n *Node) forwardEvaluate(ctx context.Context, conn *grpc.ClientConn, req *pb.InternalRequest) (*pb.InternalResponse, error) {
	return n.trans.evaluator(conn).Do(ctx, req)
}

// evaluator returns the batcher of Evaluate calls over conn.
func (t *transport) evaluator(conn *grpc.ClientConn) *evalBatcher {
	t.mu.Lock()
	defer t.mu.Unlock()
	if b, ok := t.mu.evaluators[conn]; ok {
		return b
	}
	client := pb.NewInternalClient(conn)
	b := batch.New(batch.Config[*pb.InternalRequest, *pb.InternalResponse]{
		One: func(ctx context.Context, req *pb.InternalRequest) (*pb.InternalResponse, error) {
			return client.Evaluate(ctx, req)
		},
		Many: func(ctx context.Context, reqs []*pb.InternalRequest, deadlines []time.Time) ([]*pb.InternalResponse, []error, error) {
			breq := &pb.EvaluateBatchRequest{Requests: reqs, TimeoutMicros: batch.TimeoutMicros(deadlines)}
			resp, err := client.EvaluateBatch(forwardContext(ctx, t.n.id), breq)
			if err != nil {
				return nil, nil, err
			}
			out := make([]*pb.InternalResponse, len(resp.Results))
			errs := make([]error, len(resp.Results))
			for i, r := range resp.Results {
				if e := r.Error; e != nil {
					errs[i] = e.Err()
					continue
				}
				out[i] = r.Response
			}
			return out, errs, nil
		},
		Size:        func(req *pb.InternalRequest) int { return req.SizeVT() },
		MaxInFlight: maxEvaluatesInFlight,
		MaxItems:    maxEvaluateBatch,
		MaxBytes:    maxEvaluateBytes,
	})
	t.mu.evaluators[conn] = b
	return b
}

// EvaluateBatch runs each command as Evaluate would, all at once. A
// malformed batch is refused as a whole before any command runs.
func (s *internalServer) EvaluateBatch(ctx context.Context, req *pb.EvaluateBatchRequest) (*pb.EvaluateBatchResponse, error) {
	n := s.n
	switch {
	case len(req.Requests) == 0:
		return nil, n.toStatus(invalidf("batch has no commands"))
	case len(req.Requests) > maxBatchItems:
		return nil, n.toStatus(invalidf("batch has %d commands, more than the limit of %d", len(req.Requests), maxBatchItems))
	case len(req.TimeoutMicros) != len(req.Requests):
		return nil, n.toStatus(invalidf("batch has %d commands and %d timeouts", len(req.Requests), len(req.TimeoutMicros)))
	}
	for i, r := range req.Requests {
		if len(r.Key) == 0 {
			return nil, n.toStatus(invalidf("batch command %d has no routing key", i))
		}
		if req.TimeoutMicros[i] < 0 {
			return nil, n.toStatus(invalidf("batch command %d has a negative timeout", i))
		}
	}
	resp := &pb.EvaluateBatchResponse{Results: make([]*pb.EvaluateResult, len(req.Requests))}
	n.items.Each(len(req.Requests), func(i int) {
		resp.Results[i] = n.evaluateItem(ctx, req.Requests[i], req.TimeoutMicros[i])
	})
	return resp, nil
}

// evaluateItem runs one command of a batch as Evaluate would, with its own
// timeout (0: the batch's), and records it under Evaluate in the metrics.
func (n *Node) evaluateItem(ctx context.Context, r *pb.InternalRequest, timeoutMicros int64) *pb.EvaluateResult {
	if timeoutMicros > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(timeoutMicros)*time.Microsecond)
		defer cancel()
	}
	start := time.Now()
	out, err := n.evaluate(ctx, r)
	n.metrics.observeCall(pb.Internal_Evaluate_FullMethodName, start, err)
	if err != nil {
		return &pb.EvaluateResult{Error: pb.StatusOf(err)}
	}
	return &pb.EvaluateResult{Response: out}
}

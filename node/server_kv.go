package node

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
	replica "github.com/raftrix/raftrixdb/range"
)

// kvServer implements the public KV service. Any node accepts any request:
// it serves it if it leads the key's range, and forwards it to the leader
// otherwise. A forwarded request is never forwarded again, so a stale view
// of leadership costs one NotLeader round, never a loop.
type kvServer struct {
	pb.UnimplementedKVServer
	n *Node
	// internal is set for the node's own use of the KV API, which may touch
	// system keys.
	internal bool
}

// forwardedKey marks, in gRPC metadata, a request forwarded by another node.
const forwardedKey = "raftrix-forwarded-by"

// isForwarded reports whether ctx's request was forwarded by another node.
// It reads the one key (FromIncomingContext would copy all the metadata,
// on every item of every batch).
func isForwarded(ctx context.Context) bool {
	return len(metadata.ValueFromIncomingContext(ctx, forwardedKey)) > 0
}

// readyTarget returns an established connection to target (0: none).
func (n *Node) readyTarget(ctx context.Context, target uint64) (*grpc.ClientConn, bool) {
	if target == 0 {
		return nil, false
	}
	return n.trans.readyConn(ctx, target)
}

// ownRequest strips ctx of a forwarding mark: the node is about to make a
// request of its own while serving one (a forwarded split that allocates a
// range ID, a read that settles an intent), and that request may need a
// forward of its own.
func ownRequest(ctx context.Context) context.Context {
	return metadata.NewIncomingContext(ctx, metadata.MD{})
}

// forwardContext marks an outgoing request as forwarded by node id.
func forwardContext(ctx context.Context, id uint64) context.Context {
	return metadata.AppendToOutgoingContext(ctx, forwardedKey, strconv.FormatUint(id, 10))
}

// errReread asks a scan to read its range again after settling intents.
var errReread = errors.New("read again")

// leaderRetryInterval is how long to wait for an election or a fresher view
// of the leader before trying again.
const leaderRetryInterval = 20 * time.Millisecond

// onLeader runs local on this node's replica of the range that holds key if
// that replica leads, and forward against the leader's node otherwise,
// retrying while the leader is unknown or has just moved until ctx ends.
//
// Where to forward: the leader a peer's refusal named just before (fresher
// than anything local), else the leader the local replica names (without one:
// that placement named, remote_ranges.go), else each peer in turn,
// following their hints. The local replica's view is not enough
// on its own: a replica removed while its node was away (a learner left by
// a failed move, say) may never learn a leader again, and a node that
// trusted it would never reach the range, nor, for the system range, the
// placement service that would tell it to destroy that replica.
func (n *Node) onLeader(ctx context.Context, key []byte,
	local func(*replica.Replica) error,
	forward func(context.Context, *grpc.ClientConn) error,
) error {
	forwarded := isForwarded(ctx)
	var hint uint64 // leader learned from a peer's routing error
	for attempt := 0; ; attempt++ {
		var err error
		var target uint64
		if r := n.replicaForKey(key); r != nil {
			err = local(r)
			var nl *replica.NotLeaderError
			if !errors.As(err, &nl) || forwarded {
				// Done, or a forwarded request: the forwarding node retries
				// with its own view, so a request is forwarded at most once.
				return err
			}
			if nl.LeaderNodeID != n.id {
				target = nl.LeaderNodeID
			}
		} else {
			err = &wrongRangeError{nodeID: n.id, key: key}
			if forwarded {
				return err
			}
		}
		if hint != 0 {
			// Used once: a hinted node that is down or no longer leads
			// must not hide the local replica's fresher view for good.
			target, hint = hint, 0
		}
		if target == 0 && attempt == 0 {
			// What placement said, if asked: tried once, for it may be
			// stale or down; then the peers, whose refusals name the leader.
			_, target, _ = n.remote.lookup(key)
		}
		if target == 0 {
			if holders := n.holderCandidates(); len(holders) > 0 {
				target = holders[attempt%len(holders)]
			}
		}
		if conn, ok := n.readyTarget(ctx, target); ok {
			ferr := forward(forwardContext(ctx, n.id), conn)
			// Retry only when the target refused before doing anything; any
			// other failure may have happened after a write was applied.
			re := RoutingErrorOf(ferr)
			if re == nil || (re.Reason == pb.RoutingError_WRONG_RANGE && re.RangeId != 0) {
				// Done, or the range's leader found the key outside its
				// range (it split): no other node would answer otherwise.
				return ferr
			}
			hint = re.LeaderNodeId
			err = ferr
		}
		select {
		case <-time.After(leaderRetryInterval):
		case <-ctx.Done():
			return err
		}
	}
}

// checkKeyAllowed refuses system keys to users. Requests forwarded by other
// nodes may carry them (with mutual TLS only node identities can forward).
func (s *kvServer) checkKeyAllowed(ctx context.Context, key []byte) error {
	if !s.internal && isSystemKey(key) && !isForwarded(ctx) {
		return invalidf("keys starting with 0xFF 0xFF are reserved for the system")
	}
	return nil
}

func header(n *Node, r *replica.Replica) *pb.ResponseHeader {
	return &pb.ResponseHeader{RangeId: r.RangeID(), NodeId: n.id}
}

func (s *kvServer) Get(ctx context.Context, req *pb.GetRequest) (*pb.GetResponse, error) {
	n := s.n
	if err := s.checkKeyAllowed(ctx, req.Key); err != nil {
		return nil, n.toStatus(err)
	}
	if err := n.cfg.Limits.validateGet(req); err != nil {
		return nil, n.toStatus(err)
	}
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	if req.Stale {
		// A stale read promises nothing about recent writes, so it returns
		// the last committed value without settling intents.
		r := n.replicaForKey(req.Key)
		if r == nil || !r.Initialized() {
			return nil, n.toStatus(&wrongRangeError{nodeID: n.id, key: req.Key})
		}
		kv, _, err := r.Get(req.Key)
		if err != nil {
			return nil, n.toStatus(err)
		}
		return &pb.GetResponse{Header: header(n, r), Found: kv != nil, Kv: kv}, nil
	}
	var resp *pb.GetResponse
	err := n.onLeader(ctx, req.Key, func(r *replica.Replica) error {
		kv, err := n.readSettled(ctx, r, req.Key)
		if err != nil {
			return err
		}
		resp = &pb.GetResponse{Header: header(n, r), Found: kv != nil, Kv: kv}
		return nil
	}, func(fctx context.Context, c *grpc.ClientConn) (err error) {
		resp, err = pb.NewKVClient(c).Get(fctx, req)
		return err
	})
	return resp, n.toStatus(err)
}

// readSettled is a linearizable read of key on its leader replica r. If a
// transaction holds the key, its record decides: committed → resolve the
// intent and read again; pending or aborted → the last committed value is
// the answer, as of the moment the record was seen not committed, provided
// the same intent is still there when we read again (otherwise the intent
// was resolved meanwhile, and we start over).
func (n *Node) readSettled(ctx context.Context, r *replica.Replica, key []byte) (*pb.KeyValue, error) {
	var notCommitted []byte // txn ID last seen not committed
	for {
		if err := r.ReadIndex(ctx); err != nil {
			return nil, err
		}
		kv, intent, err := r.Get(key)
		if err != nil || intent == nil {
			return kv, err
		}
		if notCommitted != nil && bytes.Equal(intent.TxnId, notCommitted) {
			return kv, nil
		}
		rec, err := n.txn.Settle(ctx, key, intent, false)
		if err != nil {
			return nil, err
		}
		notCommitted = nil
		if rec.Status != pb.TxnRecord_COMMITTED {
			notCommitted = intent.TxnId
		}
	}
}

// proposeSettled proposes a write; if a transaction holds the key it settles
// the intent and tries again, waiting with backoff while the transaction is
// pending.
func (n *Node) proposeSettled(ctx context.Context, r *replica.Replica, cmd func() *pb.RaftCommand) (replica.Result, error) {
	wait := 5 * time.Millisecond
	for {
		res, err := r.Propose(ctx, cmd())
		if err != nil {
			return res, err
		}
		var wi *replica.WriteIntentError
		if !errors.As(res.Err, &wi) {
			return res, nil
		}
		rec, err := n.txn.Settle(ctx, wi.Key, wi.Intent, false)
		if err != nil {
			return res, err
		}
		if rec.Status == pb.TxnRecord_PENDING {
			select {
			case <-time.After(wait):
				wait = min(2*wait, 100*time.Millisecond)
			case <-ctx.Done():
				return res, &lockedError{key: wi.Key, txnID: wi.Intent.TxnId}
			}
		}
	}
}

func (s *kvServer) Put(ctx context.Context, req *pb.PutRequest) (*pb.PutResponse, error) {
	n := s.n
	if err := s.checkKeyAllowed(ctx, req.Key); err != nil {
		return nil, n.toStatus(err)
	}
	if err := n.cfg.Limits.validatePut(req); err != nil {
		return nil, n.toStatus(err)
	}
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	var resp *pb.PutResponse
	err := n.onLeader(ctx, req.Key, func(r *replica.Replica) error {
		res, err := n.proposeSettled(ctx, r, func() *pb.RaftCommand {
			return &pb.RaftCommand{Revision: n.hlc.Next(), Op: &pb.RaftCommand_Put{Put: req}}
		})
		if err != nil {
			return err
		}
		if res.Err != nil {
			return res.Err
		}
		n.hlc.Observe(res.KV.ModRevision)
		kv := res.KV
		kv.Value = nil // the caller has it; do not send it back
		resp = &pb.PutResponse{Header: header(n, r), Kv: kv}
		if req.PrevKv {
			resp.PrevKv = res.PrevKV
		}
		return nil
	}, func(fctx context.Context, c *grpc.ClientConn) (err error) {
		resp, err = pb.NewKVClient(c).Put(fctx, req)
		return err
	})
	return resp, n.toStatus(err)
}

func (s *kvServer) Delete(ctx context.Context, req *pb.DeleteRequest) (*pb.DeleteResponse, error) {
	n := s.n
	if err := s.checkKeyAllowed(ctx, req.Key); err != nil {
		return nil, n.toStatus(err)
	}
	if err := n.cfg.Limits.validateDelete(req); err != nil {
		return nil, n.toStatus(err)
	}
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	var resp *pb.DeleteResponse
	err := n.onLeader(ctx, req.Key, func(r *replica.Replica) error {
		res, err := n.proposeSettled(ctx, r, func() *pb.RaftCommand {
			return &pb.RaftCommand{Revision: n.hlc.Next(), Op: &pb.RaftCommand_Delete{Delete: req}}
		})
		if err != nil {
			return err
		}
		if res.Err != nil {
			return res.Err
		}
		resp = &pb.DeleteResponse{Header: header(n, r), Deleted: res.Deleted}
		if req.PrevKv {
			resp.PrevKv = res.PrevKV
		}
		return nil
	}, func(fctx context.Context, c *grpc.ClientConn) (err error) {
		resp, err = pb.NewKVClient(c).Delete(fctx, req)
		return err
	})
	return resp, n.toStatus(err)
}

// Scan reads range by range. A forwarded scan serves only the range that
// holds its start key; the node that forwarded it goes on with the next
// range from the continuation it returns.
func (s *kvServer) Scan(ctx context.Context, req *pb.ScanRequest) (*pb.ScanResponse, error) {
	n := s.n
	from, limit, err := n.cfg.Limits.validateScan(req)
	if err != nil {
		return nil, n.toStatus(err)
	}
	if !s.internal && !isForwarded(ctx) {
		// Users never see the system key space.
		if isSystemKey(req.Start) {
			return nil, n.toStatus(invalidf("keys starting with 0xFF 0xFF are reserved for the system"))
		}
		if len(req.End) == 0 || bytes.Compare(req.End, systemPrefix) > 0 {
			req.End = systemPrefix
		}
	}
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	resp := &pb.ScanResponse{}
	for {
		kvs, next, err := n.scanOneRange(ctx, req, from, limit-len(resp.Kvs))
		if err != nil {
			return nil, n.toStatus(err)
		}
		resp.Kvs = append(resp.Kvs, kvs...)
		if next == nil {
			return resp, nil
		}
		if len(resp.Kvs) >= limit || isForwarded(ctx) {
			resp.Continuation = encodeContinuation(next)
			return resp, nil
		}
		from = next
	}
}

// scanOneRange reads up to limit keys from the range holding from, on its
// leader unless the scan is stale. next is where the scan continues, or nil
// when it is complete.
func (n *Node) scanOneRange(ctx context.Context, req *pb.ScanRequest, from []byte, limit int) (kvs []*pb.KeyValue, next []byte, err error) {
	notCommitted := map[string][]byte{}
	read := func(r *replica.Replica) error {
		res, err := r.Scan(from, req.End, limit, req.KeysOnly)
		if err != nil {
			return err
		}
		kvs = res.KVs
		next = nil
		switch desc := r.Descriptor(); {
		case res.More:
			next = append(append([]byte(nil), kvs[len(kvs)-1].Key...), 0)
		case len(desc.EndKey) > 0 && (len(req.End) == 0 || bytes.Compare(desc.EndKey, req.End) < 0):
			next = desc.EndKey
		}
		if req.Stale {
			return nil
		}
		// Settle the intents met. The values read are right for keys whose
		// intent belongs to a transaction already seen not committed;
		// anything else (a committed transaction, or a new intent) means
		// reading again.
		reread := false
		for _, ki := range res.Intents {
			if txnID, ok := notCommitted[string(ki.Key)]; ok && bytes.Equal(txnID, ki.Intent.TxnId) {
				continue
			}
			rec, err := n.txn.Settle(ctx, ki.Key, ki.Intent, false)
			if err != nil {
				return err
			}
			if rec.Status != pb.TxnRecord_COMMITTED {
				notCommitted[string(ki.Key)] = ki.Intent.TxnId
			}
			reread = true
		}
		if reread {
			return errReread
		}
		return nil
	}
	if req.Stale {
		r := n.replicaForKey(from)
		if r == nil || !r.Initialized() {
			return nil, nil, &wrongRangeError{nodeID: n.id, key: from}
		}
		return kvs, next, read(r)
	}
	err = n.onLeader(ctx, from, func(r *replica.Replica) error {
		for {
			if err := r.ReadIndex(ctx); err != nil {
				return err
			}
			if err := read(r); err != errReread {
				return err
			}
		}
	}, func(fctx context.Context, c *grpc.ClientConn) error {
		fwd := &pb.ScanRequest{Start: req.Start, End: req.End, Limit: int64(limit), KeysOnly: req.KeysOnly, Continuation: encodeContinuation(from)}
		resp, err := pb.NewKVClient(c).Scan(fctx, fwd)
		if err != nil {
			return err
		}
		kvs = resp.Kvs
		next = nil
		if len(resp.Continuation) > 0 {
			next = resp.Continuation[1:]
		}
		return nil
	})
	return kvs, next, err
}

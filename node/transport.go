package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/keepalive"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
	replica "github.com/raftrix/raftrixdb/range"
)

// The transport carries Raft messages between nodes. Each ordered pair of
// nodes has one RaftMessages stream, fed by one queue; a sender goroutine
// drains whatever is queued (messages of many ranges) into one batch per
// Send. Snapshots go over their own short-lived streams so that a large
// snapshot never delays heartbeats.

const (
	peerQueueSize        = 16384
	maxMessagesPerBatch  = 512
	maxBatchBytes        = 4 << 20
	snapshotChunkBytes   = 1 << 20
	maxSnapshotsInFlight = 4
	snapshotTimeout      = 2 * time.Minute
	peerConnectWait      = 200 * time.Millisecond
)

type outMsg struct {
	rangeID   uint64
	toReplica uint64
	msg       *pb.RaftMessage
}

type transport struct {
	n       *Node
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	snapSem chan struct{}

	mu struct {
		sync.Mutex
		conns  map[uint64]*grpc.ClientConn
		queues map[uint64]chan outMsg
		// missingSnapAt is when a snapshot was last sent to a replica
		// reported missing (see missing_replica.go).
		missingSnapAt map[[2]uint64]time.Time
		// routes maps range → replica → node for replicas the local
		// descriptor does not list yet (route_back.go).
		routes map[uint64]map[uint64]uint64
		// evaluators batch the Evaluate calls sent over each connection
		// (evaluate_batch.go).
		evaluators map[*grpc.ClientConn]*evalBatcher
	}
}

func newTransport(n *Node) *transport {
	ctx, cancel := context.WithCancel(context.Background())
	t := &transport{n: n, ctx: ctx, cancel: cancel, snapSem: make(chan struct{}, maxSnapshotsInFlight)}
	t.mu.conns = make(map[uint64]*grpc.ClientConn)
	t.mu.queues = make(map[uint64]chan outMsg)
	t.mu.evaluators = make(map[*grpc.ClientConn]*evalBatcher)
	return t
}

func (t *transport) stop() {
	t.cancel()
	t.wg.Wait()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.mu.conns {
		c.Close()
	}
}

// conn returns the shared client connection to a peer node.
func (t *transport) conn(nodeID uint64) (*grpc.ClientConn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.mu.conns[nodeID]; ok {
		return c, nil
	}
	addr, ok := t.n.peerAddr(nodeID)
	if !ok {
		return nil, fmt.Errorf("no address known for node %d", nodeID)
	}
	c, err := grpc.NewClient(addr, t.n.dialOptions()...)
	if err != nil {
		return nil, err
	}
	t.mu.conns[nodeID] = c
	return c, nil
}

// dialOptions are the options of every connection this node opens to a
// peer.
func (n *Node) dialOptions() []grpc.DialOption {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(n.peerCredentials()),
		// Quiesced ranges send nothing; keepalives notice a dead or cut-off
		// peer anyway, so its ranges wake and elect (onPeerDown).
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 2 * time.Second, Timeout: 2 * time.Second, PermitWithoutStream: true}),
		// gRPC's default reconnect backoff grows to 2 minutes; a peer back
		// from a long outage would stay unreachable that long.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(n.cfg.Limits.requestSize()), grpc.MaxCallSendMsgSize(n.cfg.Limits.requestSize())),
		pb.DialCodec(),
	}
	if n.cfg.Dialer != nil {
		opts = append(opts, grpc.WithContextDialer(n.cfg.Dialer))
	}
	return opts
}

// selfConn is a connection to this node's own gRPC server.
func (n *Node) selfConn() *grpc.ClientConn {
	c, err := n.trans.conn(n.id)
	if err != nil {
		n.fatal(fmt.Errorf("no connection to self: %w", err))
	}
	return c
}

// readyConn returns the connection to a peer if it is established, waiting
// briefly for it to come up. A request sent on a connection that was never
// up certainly did not reach the peer, so its caller may retry elsewhere.
func (t *transport) readyConn(ctx context.Context, nodeID uint64) (*grpc.ClientConn, bool) {
	c, err := t.conn(nodeID)
	if err != nil {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(ctx, peerConnectWait)
	defer cancel()
	for {
		st := c.GetState()
		if st == connectivity.Ready {
			return c, true
		}
		c.Connect()
		if !c.WaitForStateChange(ctx, st) {
			return c, false
		}
	}
}

// queue returns the outgoing queue to a node, starting its sender.
func (t *transport) queue(nodeID uint64) chan outMsg {
	t.mu.Lock()
	defer t.mu.Unlock()
	q, ok := t.mu.queues[nodeID]
	if !ok {
		q = make(chan outMsg, peerQueueSize)
		t.mu.queues[nodeID] = q
		t.wg.Add(1)
		go t.runPeer(nodeID, q)
	}
	return q
}

// sendMessages hands a replica's outgoing messages to the transport. It
// never blocks: when a peer's queue is full the message is dropped and Raft
// is told the peer is unreachable; Raft retransmits.
func (t *transport) sendMessages(r *replica.Replica, msgs []raftpb.Message) {
	if len(msgs) == 0 {
		return
	}
	desc := r.Descriptor()
	for i := range msgs {
		m := msgs[i]
		toNode := t.nodeOf(desc, m.To)
		if toNode == 0 {
			continue
		}
		if m.Type == raftpb.MsgSnap {
			t.sendSnapshot(r, toNode, m)
			continue
		}
		if t.knobDrops(r, m) {
			continue
		}
		data, err := m.Marshal()
		if err != nil {
			t.n.logger.Error("marshal raft message", "error", err)
			continue
		}
		select {
		case t.queue(toNode) <- outMsg{rangeID: r.RangeID(), toReplica: m.To, msg: &pb.RaftMessage{RangeId: r.RangeID(), Message: data}}:
			t.n.metrics.raftMessageSent(m.Type)
		default:
			t.n.metrics.raftMsgsDropped.Inc()
			r.ReportUnreachable(m.To)
		}
	}
}

// knobDrops reports whether a test's TestingKnobs.DropRaftMessage drops m.
func (t *transport) knobDrops(r *replica.Replica, m raftpb.Message) bool {
	drop := t.n.cfg.Knobs.DropRaftMessage
	return drop != nil && drop(r.RangeID(), m)
}

// sendQuiesce sends a quiescing leader's last heartbeats, marked so that
// caught-up followers stop ticking.
func (t *transport) sendQuiesce(r *replica.Replica, msgs []raftpb.Message) {
	desc := r.Descriptor()
	for i := range msgs {
		toNode := t.nodeOf(desc, msgs[i].To)
		if t.knobDrops(r, msgs[i]) {
			continue
		}
		data, err := msgs[i].Marshal()
		if toNode == 0 || err != nil {
			continue
		}
		select {
		case t.queue(toNode) <- outMsg{rangeID: r.RangeID(), toReplica: msgs[i].To, msg: &pb.RaftMessage{RangeId: r.RangeID(), Message: data, Quiesce: true}}:
		default:
			// The follower keeps ticking, campaigns, and so wakes the
			// leader; nothing is lost.
		}
	}
}

// runPeer keeps one stream to a peer open and sends batches on it.
func (t *transport) runPeer(nodeID uint64, q chan outMsg) {
	defer t.wg.Done()
	backoff := 50 * time.Millisecond
	for t.ctx.Err() == nil {
		err := t.streamTo(nodeID, q)
		if t.ctx.Err() != nil {
			return
		}
		t.n.logger.Debug("raft stream to peer failed", "peer", nodeID, "error", err)
		t.dropQueued(q)
		t.n.onPeerDown(nodeID)
		select {
		case <-time.After(backoff):
		case <-t.ctx.Done():
			return
		}
		backoff = min(backoff*2, time.Second)
	}
}

func (t *transport) streamTo(nodeID uint64, q chan outMsg) error {
	conn, err := t.conn(nodeID)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(t.ctx)
	defer cancel()
	stream, err := pb.NewRaftClient(conn).RaftMessages(ctx)
	if err != nil {
		return err
	}
	go func() {
		// Acks only report problems; reading them keeps flow control moving.
		for {
			ack, err := stream.Recv()
			if err != nil {
				cancel()
				return
			}
			if ack.NoReplica {
				t.n.replicaMissing(ack.RangeId, ack.ToReplica, nodeID)
			}
			if ack.RemovedReplica != 0 {
				t.n.replicaRemoved(ack.RangeId, ack.RemovedReplica)
			}
		}
	}()
	batch := &pb.RaftMessageBatch{FromNode: t.n.id, ToNode: nodeID}
	var sent []outMsg
	for {
		select {
		case m := <-q:
			sent = append(sent[:0], m)
		case <-ctx.Done():
			return ctx.Err()
		}
		// Bound a batch by count and by bytes: appends carry up to 1 MiB of
		// entries each, and a batch must stay well below the receiver's
		// message size limit.
		size := len(sent[0].msg.Message)
	drain:
		for len(sent) < maxMessagesPerBatch && size < maxBatchBytes {
			select {
			case m := <-q:
				sent = append(sent, m)
				size += len(m.msg.Message)
			default:
				break drain
			}
		}
		batch.Messages = batch.Messages[:0]
		for _, m := range sent {
			batch.Messages = append(batch.Messages, m.msg)
		}
		if err := stream.Send(batch); err != nil {
			t.reportUnreachable(sent)
			return err
		}
	}
}

// dropQueued empties a queue whose peer is unreachable.
func (t *transport) dropQueued(q chan outMsg) {
	var dropped []outMsg
	for {
		select {
		case m := <-q:
			dropped = append(dropped, m)
		default:
			t.reportUnreachable(dropped)
			return
		}
	}
}

func (t *transport) reportUnreachable(msgs []outMsg) {
	for _, m := range msgs {
		t.n.metrics.raftMsgsDropped.Inc()
		if r := t.n.replica(m.rangeID); r != nil {
			r.ReportUnreachable(m.toReplica)
		}
	}
}

// sendSnapshot streams a snapshot of r to a follower in the background and
// reports the outcome to Raft.
func (t *transport) sendSnapshot(r *replica.Replica, toNode uint64, m raftpb.Message) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		select {
		case t.snapSem <- struct{}{}:
			defer func() { <-t.snapSem }()
		case <-t.ctx.Done():
			return
		}
		keys, err := t.streamSnapshot(r, toNode, m)
		if err != nil {
			t.n.logger.Warn("send snapshot failed", "range", r.RangeID(), "to_node", toNode, "error", err)
		} else {
			t.n.metrics.snapshotsSent.Inc()
			t.n.logger.Info("sent snapshot", "range", r.RangeID(), "to_node", toNode, "keys", keys)
		}
		r.ReportSnapshot(m.To, err == nil)
		t.n.sched.enqueue(r.RangeID(), flagReady)
	}()
}

func (t *transport) streamSnapshot(r *replica.Replica, toNode uint64, m raftpb.Message) (int, error) {
	start := time.Now()
	snap, err := r.OpenSnapshot()
	if err != nil {
		return 0, err
	}
	defer snap.Close()
	// Send the snapshot as of now, not as of when Raft asked for it: the
	// metadata must describe exactly the data streamed.
	m.Snapshot = &raftpb.Snapshot{Data: snap.Data, Metadata: snap.Meta}
	msgBytes, err := m.Marshal()
	if err != nil {
		return 0, err
	}
	conn, err := t.conn(toNode)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(t.ctx, snapshotTimeout)
	defer cancel()
	stream, err := pb.NewRaftClient(conn).Snapshot(ctx)
	if err != nil {
		return 0, err
	}
	chunk := &pb.SnapshotChunk{Header: &pb.SnapshotHeader{
		RangeId: r.RangeID(), FromNode: t.n.id, ToNode: toNode, Message: msgBytes, Descriptor_: snap.Descriptor,
	}}
	size, keys, total := 0, 0, 0
	err = snap.Iterate(func(k, v []byte) error {
		chunk.Kvs = append(chunk.Kvs, &pb.EngineKV{Key: append([]byte(nil), k...), Value: append([]byte(nil), v...)})
		size += len(k) + len(v)
		total += len(k) + len(v)
		keys++
		if size < snapshotChunkBytes {
			return nil
		}
		if err := stream.Send(chunk); err != nil {
			return err
		}
		chunk, size = &pb.SnapshotChunk{}, 0
		return nil
	})
	if err != nil {
		return keys, err
	}
	chunk.Final = true
	if err := stream.Send(chunk); err != nil {
		return keys, err
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return keys, err
	}
	if !resp.Applied {
		return keys, fmt.Errorf("receiver refused snapshot: %s", resp.Error)
	}
	t.n.metrics.snapshotSent(start, total)
	return keys, nil
}

// raftServer receives Raft traffic from peers.
type raftServer struct {
	pb.UnimplementedRaftServer
	n *Node
}

func (s *raftServer) RaftMessages(stream pb.Raft_RaftMessagesServer) error {
	for {
		batch, err := stream.Recv()
		if err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		for _, rm := range batch.Messages {
			if err := s.step(batch.FromNode, rm); err != nil {
				ack := &pb.RaftMessageAck{RangeId: rm.RangeId, Error: err.Error()}
				var missing *missingReplicaError
				var removed *removedReplicaError
				if errors.As(err, &missing) && s.n.shouldReportMissing(missing) {
					ack.NoReplica, ack.ToReplica = true, missing.toReplica
				} else if errors.As(err, &removed) {
					ack.RemovedReplica = removed.fromReplica
				}
				if sendErr := stream.Send(ack); sendErr != nil {
					return sendErr
				}
			}
		}
	}
}

func (s *raftServer) step(fromNode uint64, rm *pb.RaftMessage) error {
	var m raftpb.Message
	if err := m.Unmarshal(rm.Message); err != nil {
		return fmt.Errorf("decode raft message: %w", err)
	}
	r := s.n.replica(rm.RangeId)
	if r == nil {
		return &missingReplicaError{nodeID: s.n.id, rangeID: rm.RangeId, toReplica: m.To, fromLeader: fromLeader(m.Type)}
	}
	desc := r.Descriptor()
	if err := checkSender(desc, &m); err != nil {
		return err
	}
	s.n.trans.learnRoute(desc, m.From, fromNode)
	if s.n.ignoresVote(r, &m) {
		return nil
	}
	step := r.Step
	if rm.Quiesce {
		step = r.StepQuiesce
	}
	if err := step(m); err != nil {
		return err
	}
	s.n.sched.enqueue(rm.RangeId, flagReady)
	return nil
}

func (s *raftServer) Snapshot(stream pb.Raft_SnapshotServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := time.Now()
	h := first.Header
	if h == nil {
		return stream.SendAndClose(&pb.SnapshotResponse{Error: "first snapshot chunk has no header"})
	}
	kvs, final := first.Kvs, first.Final
	for !final {
		c, err := stream.Recv()
		if err != nil {
			return err
		}
		kvs = append(kvs, c.Kvs...)
		final = c.Final
	}
	var m raftpb.Message
	if err := m.Unmarshal(h.Message); err != nil {
		return stream.SendAndClose(&pb.SnapshotResponse{Error: "decode snapshot message: " + err.Error()})
	}
	r := s.n.replica(h.RangeId)
	if r == nil {
		// A replica being added to this node: its first snapshot creates it.
		var err error
		if r, err = s.n.createReplica(h.Descriptor_); err != nil {
			return stream.SendAndClose(&pb.SnapshotResponse{Error: err.Error()})
		}
	}
	if err := r.ReceiveSnapshot(m, kvs); err != nil {
		return stream.SendAndClose(&pb.SnapshotResponse{Error: err.Error()})
	}
	s.n.metrics.snapshotsRecv.Inc()
	s.n.metrics.snapshotReceived(start, kvs)
	return stream.SendAndClose(&pb.SnapshotResponse{Applied: true})
}

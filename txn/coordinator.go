package txn

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/raftrix/raftrixdb/internal/hlc"
	"github.com/raftrix/raftrixdb/internal/workers"
	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
	replica "github.com/raftrix/raftrixdb/range"
)

// Sender delivers a per-range command to the leader of the range that holds
// req.Key and returns its answer. EvaluateAll delivers several at once, each
// as Evaluate would, but those bound for the same node together, so that
// their Raft rounds there can be one.
type Sender interface {
	Evaluate(ctx context.Context, req *pb.InternalRequest) (*pb.InternalResponse, error)
	EvaluateAll(ctx context.Context, reqs []*pb.InternalRequest) ([]*pb.InternalResponse, []error)
}

// RangeLookup tells which range holds a key.
type RangeLookup interface {
	RangeFor(ctx context.Context, key []byte) (rangeID uint64, err error)
}

// Config configures a Coordinator.
type Config struct {
	Sender Sender
	Lookup RangeLookup
	Clock  *hlc.HLC
	Logger *slog.Logger
	// Expiry is how long a PENDING record may go without a heartbeat before
	// anyone may abort it (default 5s). Heartbeats are sent every Expiry/5.
	Expiry time.Duration
	// Metrics, if set, counts commits, aborts, retries and resolved intents.
	Metrics *Metrics
	// Workers runs the goroutine from which each participant's command is
	// sent (nil: a new goroutine each). The node passes its pool of reused
	// goroutines.
	Workers *workers.Pool
}

// Coordinator runs transactions. It is safe for concurrent use.
type Coordinator struct {
	cfg Config
	// bg bounds the asynchronous intent resolution started by Run.
	bg       sync.WaitGroup
	bgCtx    context.Context
	bgCancel context.CancelFunc
	gc       recordGC
	// mu guards closing: once Close has begun, transactions still running
	// start no more background work (adding to bg while Close waits on it
	// is a race, found by the race detector in TestBank's node stop).
	mu      sync.Mutex
	closing bool
}

// startBackground counts one more background task for Close to wait for,
// unless Close has begun; it reports whether the task may start.
func (c *Coordinator) startBackground() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.bg.Add(1)
	return true
}

// ErrAmbiguous is returned when the coordinator cannot tell whether the
// transaction committed.
var ErrAmbiguous = errors.New("transaction outcome unknown: the commit may or may not have happened")

// ErrRangeChanged marks a Sender's error for a command whose range does not
// hold its key: the range split after the coordinator grouped the keys.
// The attempt is aborted and the transaction retried, grouped afresh.
var ErrRangeChanged = errors.New("a range of the transaction changed")

// NewCoordinator returns a coordinator.
func NewCoordinator(cfg Config) *Coordinator {
	if cfg.Expiry == 0 {
		cfg.Expiry = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Sender = cfg.Metrics.countResolved(cfg.Sender)
	ctx, cancel := context.WithCancel(context.Background())
	c := &Coordinator{cfg: cfg, bgCtx: ctx, bgCancel: cancel}
	c.gc.c = c
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		c.gc.run(ctx)
	}()
	return c
}

// Close stops background resolution; intents it leaves are settled by the
// next reader or writer that meets them, records it has not deleted yet
// stay behind as garbage.
func (c *Coordinator) Close() {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.bgCancel()
	c.bg.Wait()
}

// participant is the part of a transaction on one range.
type participant struct {
	rangeID uint64
	keys    [][]byte
	prepare *pb.TxnPrepare
	result  *pb.TxnPrepareResult
	err     error
}

// Run executes a transaction atomically and returns its outcome.
func (c *Coordinator) Run(ctx context.Context, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	keys := pb.TxnKeys(req.Compare, req.Success, req.Failure)
	if len(keys) == 0 {
		return &pb.TxnResponse{Succeeded: true}, nil
	}
	parts, err := c.split(ctx, req, keys)
	if err != nil {
		return nil, err
	}
	if len(parts) == 1 {
		return c.runOnePC(ctx, req, keys[0])
	}
	priority := c.cfg.Clock.Next()
	backoff := newBackoff()
	for {
		resp, retry, err := c.attempt(ctx, req, keys[0], parts, priority)
		if !retry {
			return resp, err
		}
		c.cfg.Metrics.retry()
		if werr := backoff.wait(ctx); werr != nil {
			return nil, fmt.Errorf("transaction kept conflicting until the deadline: %w", werr)
		}
		parts, err = c.split(ctx, req, keys)
		if err != nil {
			return nil, err
		}
	}
}

// split groups the transaction's keys, compares and operations by range.
// It asks which range holds each key once: a compare or operation goes to
// the participant of its key. (Asking again per compare and operation, as
// it once did, could get an error, or a different range after a split, for
// a key already placed: a nil participant, or one without keys, and a
// panic; found by the nemesis.)
func (c *Coordinator) split(ctx context.Context, req *pb.TxnRequest, keys [][]byte) ([]*participant, error) {
	byRange := map[uint64]*participant{}
	byKey := make(map[string]*participant, len(keys))
	var order []*participant
	for _, k := range keys {
		id, err := c.cfg.Lookup.RangeFor(ctx, k)
		if err != nil {
			return nil, fmt.Errorf("range of key %q: %w", k, err)
		}
		p, ok := byRange[id]
		if !ok {
			p = &participant{rangeID: id, prepare: &pb.TxnPrepare{}}
			byRange[id] = p
			order = append(order, p)
		}
		p.keys = append(p.keys, k)
		byKey[string(k)] = p
	}
	// keys holds every compare's and operation's key (pb.TxnKeys).
	for _, cmp := range req.Compare {
		p := byKey[string(cmp.Key)]
		p.prepare.Compare = append(p.prepare.Compare, cmp)
	}
	for i, op := range req.Success {
		p := byKey[string(pb.OpKey(op))]
		p.prepare.Success = append(p.prepare.Success, &pb.IndexedOp{Index: int32(i), Op: op})
	}
	for i, op := range req.Failure {
		p := byKey[string(pb.OpKey(op))]
		p.prepare.Failure = append(p.prepare.Failure, &pb.IndexedOp{Index: int32(i), Op: op})
	}
	return order, nil
}

func (c *Coordinator) runOnePC(ctx context.Context, req *pb.TxnRequest, key []byte) (*pb.TxnResponse, error) {
	backoff := newBackoff()
	for {
		resp, err := c.cfg.Sender.Evaluate(ctx, &pb.InternalRequest{Key: key, Op: &pb.InternalRequest_OnePc{OnePc: &pb.TxnOnePC{Txn: req}}})
		if err != nil {
			return nil, err
		}
		if resp.Conflict == nil {
			c.cfg.Metrics.commit(onePhase)
			return resp.Txn, nil
		}
		rec, err := c.Settle(ctx, resp.ConflictKey, resp.Conflict, false)
		if err != nil {
			return nil, err
		}
		if rec.Status == pb.TxnRecord_PENDING {
			if err := backoff.wait(ctx); err != nil {
				return nil, fmt.Errorf("key %q stayed locked by transaction %x: %w", resp.ConflictKey, resp.Conflict.TxnId, err)
			}
		}
		c.cfg.Metrics.retry()
	}
}

func newTxnID() []byte {
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	return id
}

// attempt runs one round of two-phase commit. retry reports that the
// transaction was aborted before its commit point and may run again.
func (c *Coordinator) attempt(ctx context.Context, req *pb.TxnRequest, primary []byte, parts []*participant, priority int64) (resp *pb.TxnResponse, retry bool, err error) {
	txnID := newTxnID()
	hbCtx, stopHeartbeat := context.WithCancel(ctx)
	defer stopHeartbeat()
	go c.heartbeat(hbCtx, txnID, primary)

	// Phase 1: prepare every participant in parallel.
	start := c.cfg.Clock.Next()
	for _, p := range parts {
		p.prepare.TxnId = txnID
		p.prepare.PrimaryKey = primary
		p.prepare.Priority = priority
		p.prepare.Heartbeat = start // also the attempt's start, in its intents
		p.prepare.WriteRecord = p.containsKey(primary)
	}
	abort := func() { c.abort(txnID, primary, parts) }
	prepareStart := time.Now()
	pending := parts
	wait := newBackoff()
	for round := 0; len(pending) > 0; round++ {
		c.prepareAll(ctx, pending)
		var again []*participant
		holderPending := false
		for _, p := range pending {
			switch {
			case errors.Is(p.err, ErrRangeChanged):
				abort()
				return nil, true, nil
			case p.err != nil:
				abort()
				return nil, false, p.err
			case p.result == nil:
				abort()
				return nil, false, fmt.Errorf("range %d sent no prepare result", p.rangeID)
			case p.result.Aborted:
				// Someone aborted this transaction (it was wounded, or its
				// record was missing for too long).
				abort()
				return nil, true, nil
			case p.result.Conflict != nil:
				// Wound-wait: an older transaction aborts the younger holder;
				// a younger one waits for the older holder, keeping the locks
				// it has. Waits only go from younger to older, so they never
				// form a cycle. An older holder may wound us meanwhile; we
				// find out at the primary or at the commit point.
				force := priority < p.result.Conflict.Priority
				rec, err := c.Settle(ctx, p.result.ConflictKey, p.result.Conflict, force)
				if err != nil {
					abort()
					return nil, false, err
				}
				if round >= maxPrepareRounds {
					abort()
					return nil, true, nil
				}
				holderPending = holderPending || rec.Status == pb.TxnRecord_PENDING
				again = append(again, p)
			}
		}
		pending = again
		if holderPending {
			if err := wait.wait(ctx); err != nil {
				abort()
				return nil, false, err
			}
		}
	}

	c.cfg.Metrics.phase(phasePrepare, prepareStart)

	// Phase 2: decide, then the commit point.
	succeeded := true
	var maxRev int64
	for _, p := range parts {
		for _, ok := range p.result.CompareResults {
			succeeded = succeeded && ok
		}
		maxRev = max(maxRev, p.result.LastRevision)
	}
	commitRev := max(c.cfg.Clock.Next(), maxRev+1)
	c.cfg.Clock.Observe(commitRev)
	commitStart := time.Now()
	rec, resolved, err := c.end(ctx, txnID, primary, primaryKeys(parts, primary), succeeded, commitRev)
	if err != nil {
		return nil, false, err
	}
	c.cfg.Metrics.phase(phaseCommit, commitStart)
	if rec.Status != pb.TxnRecord_COMMITTED {
		// Someone aborted us (an expired heartbeat or an older transaction).
		c.cfg.Metrics.abort()
		c.resolveAll(rec, txnID, primary, parts, resolved)
		return nil, true, nil
	}
	stopHeartbeat()
	c.cfg.Metrics.commit(twoPhase)
	c.resolveAll(rec, txnID, primary, parts, resolved)
	return buildResponse(req, parts, succeeded, commitRev), false, nil
}

// primaryKeys returns the keys of the participant that holds the primary.
func primaryKeys(parts []*participant, primary []byte) [][]byte {
	for _, p := range parts {
		if p.containsKey(primary) {
			return p.keys
		}
	}
	return nil
}

func (p *participant) containsKey(k []byte) bool {
	for _, pk := range p.keys {
		if bytes.Equal(pk, k) {
			return true
		}
	}
	return false
}

// maxPrepareRounds bounds how often one attempt re-prepares participants
// after settling the intents that blocked them.
const maxPrepareRounds = 50

// prepareAll sends the prepares of ps at once and records their results.
func (c *Coordinator) prepareAll(ctx context.Context, ps []*participant) {
	reqs := make([]*pb.InternalRequest, len(ps))
	for i, p := range ps {
		reqs[i] = &pb.InternalRequest{Key: p.keys[0], Op: &pb.InternalRequest_Prepare{Prepare: p.prepare}}
	}
	resps, errs := c.cfg.Sender.EvaluateAll(ctx, reqs)
	for i, p := range ps {
		p.result, p.err = resps[i].GetPrepare(), errs[i]
	}
}

// end performs the commit CAS, which also resolves the intents on the
// primary's range (primaryKeys) by the outcome; resolved reports that it
// did. If its answer is lost it asks the record again, since the CAS may
// have happened.
func (c *Coordinator) end(ctx context.Context, txnID, primary []byte, primaryKeys [][]byte, succeeded bool, commitRev int64) (rec *pb.TxnRecord, resolved bool, err error) {
	resp, err := c.cfg.Sender.Evaluate(ctx, &pb.InternalRequest{Key: primary, Op: &pb.InternalRequest_End{End: &pb.TxnEnd{
		TxnId: txnID, PrimaryKey: primary, Commit: true, Succeeded: succeeded, CommitRevision: commitRev, ResolveKeys: primaryKeys,
	}}})
	if err == nil {
		return resp.Record, resp.Resolved, nil
	}
	// The outcome is unknown: read the record (a push that aborts nothing).
	for i := 0; i < 5; i++ {
		qctx, cancel := context.WithTimeout(c.bgCtx, 2*time.Second)
		r, qerr := c.cfg.Sender.Evaluate(qctx, &pb.InternalRequest{Key: primary, Op: &pb.InternalRequest_Push{Push: &pb.TxnPush{
			TxnId: txnID, PrimaryKey: primary, TxnTimestamp: c.cfg.Clock.Next(),
		}}})
		cancel()
		if qerr == nil && r.Record.Status != pb.TxnRecord_PENDING {
			return r.Record, false, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, false, fmt.Errorf("%w (%v)", ErrAmbiguous, err)
}

// abort ends an unfinished transaction and drops its intents, in the
// background: the outcome is already decided, and readers would settle the
// intents anyway.
func (c *Coordinator) abort(txnID, primary []byte, parts []*participant) {
	c.cfg.Metrics.abort()
	if !c.startBackground() {
		return // closing: whoever meets the intents settles them
	}
	go func() {
		defer c.bg.Done()
		ctx, cancel := context.WithTimeout(c.bgCtx, 10*time.Second)
		defer cancel()
		resp, err := c.cfg.Sender.Evaluate(ctx, &pb.InternalRequest{Key: primary, Op: &pb.InternalRequest_End{End: &pb.TxnEnd{
			TxnId: txnID, PrimaryKey: primary, Commit: false, ResolveKeys: primaryKeys(parts, primary),
		}}})
		if err != nil {
			c.cfg.Logger.Debug("abort transaction", "txn", fmt.Sprintf("%x", txnID), "error", err)
			return
		}
		c.resolveParts(ctx, resp.Record, txnID, primary, parts, resp.Resolved)
	}()
}

// resolveAll resolves a finished transaction's intents in the background
// (those on the primary's range only if the end did not: primaryResolved).
func (c *Coordinator) resolveAll(rec *pb.TxnRecord, txnID, primary []byte, parts []*participant, primaryResolved bool) {
	if !c.startBackground() {
		return // closing: whoever meets the intents settles them
	}
	c.cfg.Workers.Go(func() {
		defer c.bg.Done()
		ctx, cancel := context.WithTimeout(c.bgCtx, 10*time.Second)
		defer cancel()
		c.resolveParts(ctx, rec, txnID, primary, parts, primaryResolved)
	})
}

// resolveParts resolves every participant's intents (the primary's range's
// unless primaryResolved) and then queues the record for deletion. If any
// resolution fails the record is kept: whoever meets the intent needs it.
func (c *Coordinator) resolveParts(ctx context.Context, rec *pb.TxnRecord, txnID, primary []byte, parts []*participant, primaryResolved bool) {
	todo := parts
	if primaryResolved {
		todo = slices.DeleteFunc(slices.Clone(parts), func(p *participant) bool { return p.containsKey(primary) })
	}
	reqs := make([]*pb.InternalRequest, len(todo))
	for i, p := range todo {
		reqs[i] = resolveRequest(rec, txnID, primary, p.keys)
	}
	_, errs := c.cfg.Sender.EvaluateAll(ctx, reqs)
	failed := false
	for _, err := range errs {
		if err != nil {
			c.cfg.Logger.Debug("resolve intents", "txn", fmt.Sprintf("%x", txnID), "error", err)
			failed = true
		}
	}
	if !failed {
		c.gc.add(primary, txnID)
	}
}

func resolveRequest(rec *pb.TxnRecord, txnID, primary []byte, keys [][]byte) *pb.InternalRequest {
	return &pb.InternalRequest{Key: keys[0], Op: &pb.InternalRequest_Resolve{Resolve: &pb.ResolveIntents{
		TxnId: txnID, Record: rec, Keys: keys, PrimaryKey: primary,
	}}}
}

// heartbeat keeps the record alive while the coordinator works.
func (c *Coordinator) heartbeat(ctx context.Context, txnID, primary []byte) {
	t := time.NewTicker(c.cfg.Expiry / 5)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = c.cfg.Sender.Evaluate(ctx, &pb.InternalRequest{Key: primary, Op: &pb.InternalRequest_Heartbeat{Heartbeat: &pb.TxnHeartbeat{
				TxnId: txnID, PrimaryKey: primary, Heartbeat: c.cfg.Clock.Next(),
			}}})
		}
	}
}

// buildResponse assembles the chosen branch's responses in request order and
// fills in the commit revision the participants could not know.
func buildResponse(req *pb.TxnRequest, parts []*participant, succeeded bool, commitRev int64) *pb.TxnResponse {
	n := len(req.Failure)
	if succeeded {
		n = len(req.Success)
	}
	resp := &pb.TxnResponse{Succeeded: succeeded, Responses: make([]*pb.ResponseOp, n)}
	wrote := false
	for _, p := range parts {
		rs := p.result.Failure
		if succeeded {
			rs = p.result.Success
		}
		for _, r := range rs {
			fillRevision(r.Response, commitRev)
			resp.Responses[r.Index] = r.Response
			wrote = wrote || r.Response.GetGet() == nil
		}
	}
	if wrote {
		resp.Revision = commitRev
	}
	return resp
}

func fillRevision(r *pb.ResponseOp, rev int64) {
	fix := func(kv *pb.KeyValue) {
		if kv == nil {
			return
		}
		if kv.ModRevision == replica.PendingRevision {
			kv.ModRevision = rev
		}
		if kv.CreateRevision == replica.PendingRevision {
			kv.CreateRevision = rev
		}
	}
	switch x := r.Response.(type) {
	case *pb.ResponseOp_Get:
		fix(x.Get.Kv)
	case *pb.ResponseOp_Put:
		fix(x.Put.Kv)
		fix(x.Put.PrevKv)
	case *pb.ResponseOp_Delete:
		fix(x.Delete.PrevKv)
	}
}

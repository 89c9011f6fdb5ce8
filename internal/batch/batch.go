// Package batch sends the requests that concurrent callers make of one
// server together, in one call, as TiKV's client batches commands.
//
// An RPC costs the caller and the server far more CPU (HTTP/2 frames, a
// stream, system calls) than a small put itself, so a busy process pays it
// once for many requests. No request waits for a batch to fill: a request
// goes out at once, as its own call, while fewer than MaxInFlight calls to
// the server are outstanding; otherwise it joins the next batch, which
// leaves as soon as one of those calls returns. A lone caller therefore
// sees plain calls, and a batch only forms where requests queue anyway.
//
// Each request in a batch stays its own operation: the server runs it with
// its own deadline and it succeeds or fails alone.
package batch

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Config says how to send requests of type Req answered by Resp.
type Config[Req, Resp any] struct {
	// One sends a lone request as its own call, with its caller's context.
	One func(ctx context.Context, req Req) (Resp, error)
	// Many sends several requests in one call. deadlines[i] is request i's
	// deadline (zero: none); ctx ends at the latest of them and does not
	// end with any one caller's context. It returns one result and error
	// per request, or err when the whole call failed.
	Many func(ctx context.Context, reqs []Req, deadlines []time.Time) (results []Resp, errs []error, err error)
	// Size is a request's size in bytes, roughly, to bound a batch.
	Size func(Req) int
	// MaxInFlight bounds the calls outstanding at once; MaxItems and
	// MaxBytes bound one batch (one request larger than MaxBytes still
	// goes, alone).
	MaxInFlight, MaxItems, MaxBytes int
}

// Batcher sends the requests of many goroutines to one server.
type Batcher[Req, Resp any] struct {
	cfg Config[Req, Resp]

	mu struct {
		sync.Mutex
		queue    []*call[Req, Resp]
		inFlight int
	}
}

// call is one request waiting for its result.
type call[Req, Resp any] struct {
	ctx  context.Context
	req  Req
	size int
	done chan struct{}
	resp Resp
	err  error
}

// New returns a Batcher.
func New[Req, Resp any](cfg Config[Req, Resp]) *Batcher[Req, Resp] {
	return &Batcher[Req, Resp]{cfg: cfg}
}

// Do sends req, alone or in a batch, and returns its result. If ctx ends
// while req waits in the queue, Do returns ctx's error at once and req is
// not sent; if it ends while req is in a batch, the outcome of req is
// unknown, as for a cancelled call.
func (b *Batcher[Req, Resp]) Do(ctx context.Context, req Req) (Resp, error) {
	c := &call[Req, Resp]{ctx: ctx, req: req, size: b.cfg.Size(req)}
	b.mu.Lock()
	if b.mu.inFlight < b.cfg.MaxInFlight {
		// The queue is empty here: it only grows while every slot is busy,
		// and a slot that frees takes it.
		b.mu.inFlight++
		b.mu.Unlock()
		b.send([]*call[Req, Resp]{c})
		b.next()
		return c.resp, c.err
	}
	c.done = make(chan struct{})
	b.mu.queue = append(b.mu.queue, c)
	b.mu.Unlock()
	select {
	case <-c.done:
		return c.resp, c.err
	case <-ctx.Done():
		var zero Resp
		return zero, status.FromContextError(ctx.Err()).Err()
	}
}

// DoAll sends reqs, which one caller has at once, together: as one call
// if a slot is free, or else queued next to each other so that they leave
// in the same batch (unless MaxItems or MaxBytes splits them). It returns
// each request's result as Do would. Sent one by one, such requests would
// reach the server apart, and the commands they carry could not share its
// work (a Raft round and its sync, for transaction commands).
//
// Requests that would not fit in one batch (MaxItems, MaxBytes) go as Do
// sends them, concurrently.
func (b *Batcher[Req, Resp]) DoAll(ctx context.Context, reqs []Req) ([]Resp, []error) {
	calls := make([]*call[Req, Resp], len(reqs))
	bytes := 0
	for i, req := range reqs {
		calls[i] = &call[Req, Resp]{ctx: ctx, req: req, size: b.cfg.Size(req)}
		bytes += calls[i].size
	}
	if len(reqs) > b.cfg.MaxItems || (len(reqs) > 1 && bytes > b.cfg.MaxBytes) {
		return b.doEach(ctx, reqs)
	}
	b.mu.Lock()
	if b.mu.inFlight < b.cfg.MaxInFlight {
		b.mu.inFlight++
		b.mu.Unlock()
		b.send(calls)
		b.next()
	} else {
		for _, c := range calls {
			c.done = make(chan struct{})
		}
		b.mu.queue = append(b.mu.queue, calls...)
		b.mu.Unlock()
	}
	resps := make([]Resp, len(calls))
	errs := make([]error, len(calls))
	for i, c := range calls {
		if c.done != nil { // queued: a batch goroutine sets its result
			select {
			case <-c.done:
			case <-ctx.Done():
				errs[i] = status.FromContextError(ctx.Err()).Err()
				continue
			}
		}
		resps[i], errs[i] = c.resp, c.err
	}
	return resps, errs
}

// doEach runs Do for every request at once.
func (b *Batcher[Req, Resp]) doEach(ctx context.Context, reqs []Req) ([]Resp, []error) {
	resps := make([]Resp, len(reqs))
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Go(func() { resps[i], errs[i] = b.Do(ctx, req) })
	}
	wg.Wait()
	return resps, errs
}

// Queued returns how many requests wait for a free slot.
func (b *Batcher[Req, Resp]) Queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.mu.queue)
}

// next hands the slot just freed to the queued requests, if any: a
// goroutine sends them as one batch and keeps the slot while more queue.
func (b *Batcher[Req, Resp]) next() {
	batch := b.take()
	if batch == nil {
		return
	}
	go func() {
		for batch != nil {
			b.send(batch)
			for _, c := range batch {
				close(c.done)
			}
			batch = b.take()
		}
	}()
}

// take removes the next batch from the queue, or releases the caller's
// slot and returns nil when nothing is queued. Requests whose callers have
// given up are dropped.
func (b *Batcher[Req, Resp]) take() []*call[Req, Resp] {
	b.mu.Lock()
	defer b.mu.Unlock()
	var batch []*call[Req, Resp]
	n, bytes := 0, 0
	for ; n < len(b.mu.queue) && len(batch) < b.cfg.MaxItems; n++ {
		c := b.mu.queue[n]
		if c.ctx.Err() != nil {
			continue // its caller has returned
		}
		if bytes += c.size; len(batch) > 0 && bytes > b.cfg.MaxBytes {
			break
		}
		batch = append(batch, c)
	}
	b.mu.queue = append(b.mu.queue[:0], b.mu.queue[n:]...)
	if len(batch) == 0 {
		b.mu.inFlight--
		return nil
	}
	return batch
}

// send runs a batch and sets each call's result; one request goes as its
// own call.
func (b *Batcher[Req, Resp]) send(batch []*call[Req, Resp]) {
	if len(batch) == 1 {
		c := batch[0]
		c.resp, c.err = b.cfg.One(c.ctx, c.req)
		return
	}
	reqs := make([]Req, len(batch))
	deadlines := make([]time.Time, len(batch))
	var latest time.Time
	for i, c := range batch {
		reqs[i] = c.req
		if d, ok := c.ctx.Deadline(); ok {
			deadlines[i] = d
			if d.After(latest) {
				latest = d
			}
		}
	}
	ctx := context.Background()
	if !latest.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, latest)
		defer cancel()
	}
	results, errs, err := b.cfg.Many(ctx, reqs, deadlines)
	if err == nil && (len(results) != len(batch) || len(errs) != len(batch)) {
		err = status.Errorf(codes.Internal, "batch of %d requests got %d results and %d errors", len(batch), len(results), len(errs))
	}
	for i, c := range batch {
		if err != nil {
			c.err = err
			continue
		}
		c.resp, c.err = results[i], errs[i]
	}
}

// TimeoutMicros returns, for each deadline, how many microseconds its
// request may still take, as a batch item carries its own timeout (0: no
// deadline; at least 1 otherwise).
func TimeoutMicros(deadlines []time.Time) []int64 {
	now := time.Now()
	out := make([]int64, len(deadlines))
	for i, d := range deadlines {
		if !d.IsZero() {
			out[i] = max(d.Sub(now).Microseconds(), 1)
		}
	}
	return out
}

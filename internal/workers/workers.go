// Package workers runs short-lived functions on goroutines that stay for
// the next ones.
//
// A goroutine starts with a small stack and grows it by copying when a
// call runs deep; a node that runs every request of a batch on a fresh
// goroutine paid that copy for every request (protobuf marshalling in
// Propose runs deep): 5% of the nodes' CPU under puts and 6% under
// transactions (scripts/profile.sh, BENCHMARKS.md). A worker keeps its
// grown stack between functions, as gRPC's stream workers do
// (grpc.NumStreamWorkers).
package workers

import (
	"sync"
	"sync/atomic"
)

// Pool runs functions on up to size reused goroutines, and on fresh ones
// when all of those are busy: Go never waits for a worker, so a function
// that blocks cannot hold up the others.
type Pool struct {
	size int64
	work chan func()
	stop chan struct{}
	live atomic.Int64
	once sync.Once
}

// New returns a pool that keeps up to size workers.
func New(size int) *Pool {
	return &Pool{size: int64(size), work: make(chan func()), stop: make(chan struct{})}
}

// Go runs f on an idle worker, on a new worker if fewer than size exist,
// or else on a goroutine of its own. A nil Pool runs every f on a new
// goroutine.
func (p *Pool) Go(f func()) {
	if p == nil {
		go f()
		return
	}
	select {
	case p.work <- f: // an idle worker took it
		return
	default:
	}
	if p.live.Add(1) <= p.size {
		go p.worker(f)
		return
	}
	p.live.Add(-1)
	go f()
}

// Each runs f(0), ..., f(n-1) all at once, each as Go runs a function, and
// returns when every one has returned (a batch's items, a transaction's
// participants).
func (p *Pool) Each(n int, f func(i int)) {
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range n {
		p.Go(func() {
			defer wg.Done()
			f(i)
		})
	}
	wg.Wait()
}

func (p *Pool) worker(f func()) {
	defer p.live.Add(-1)
	for {
		f()
		select {
		case f = <-p.work:
		case <-p.stop:
			return
		}
	}
}

// Close stops the idle workers; a busy one stops after its function. Close
// does not wait for them: the functions are the callers' to wait for (a
// batch handler waits for its items). Go still works after Close, on
// goroutines that end with their function.
func (p *Pool) Close() {
	if p == nil {
		return
	}
	p.once.Do(func() { close(p.stop) })
}

// Workers reports how many workers exist (busy or idle).
func (p *Pool) Workers() int { return int(p.live.Load()) }

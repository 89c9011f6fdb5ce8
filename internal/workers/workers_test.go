package workers

import (
	"sync"
	"testing"
	"time"
)

// TestGoNeverWaitsForAWorker runs more blocking functions than the pool
// keeps workers: all of them must run at once.
func TestGoNeverWaitsForAWorker(t *testing.T) {
	p := New(4)
	defer p.Close()
	const n = 10
	var started sync.WaitGroup
	started.Add(n)
	release := make(chan struct{})
	var done sync.WaitGroup
	done.Add(n)
	for range n {
		p.Go(func() {
			started.Done()
			<-release
			done.Done()
		})
	}
	waitOrFail(t, &started, "not every function started while the others blocked")
	if got := p.Workers(); got != 4 {
		t.Fatalf("%d workers, want the maximum 4 (the rest on goroutines of their own)", got)
	}
	close(release)
	waitOrFail(t, &done, "functions did not finish")
}

// TestIdleWorkersAreReused checks that a worker goes back for more work
// after its function, so that functions run one after another share it.
func TestIdleWorkersAreReused(t *testing.T) {
	p := New(8)
	defer p.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	p.Go(wg.Done)
	wg.Wait()
	for i := range 100 {
		// What Go does first: hand the function to an idle worker. Blocking
		// here (Go would not) waits for the worker to come back for it.
		wg.Add(1)
		select {
		case p.work <- wg.Done:
		case <-time.After(5 * time.Second):
			t.Fatalf("function %d: the worker did not come back for more work", i+2)
		}
		wg.Wait()
	}
	if got := p.Workers(); got != 1 {
		t.Fatalf("after 101 sequential functions: %d workers, want 1", got)
	}
}

// TestCloseStopsTheWorkers checks that Close ends the idle workers at once
// and a busy one after its function, and that Go still runs functions
// after Close.
func TestCloseStopsTheWorkers(t *testing.T) {
	p := New(4)
	release := make(chan struct{})
	var busy sync.WaitGroup
	busy.Add(1)
	p.Go(func() { <-release; busy.Done() })
	var idle sync.WaitGroup
	idle.Add(1)
	p.Go(idle.Done)
	idle.Wait()
	p.Close()
	waitWorkers(t, p, 1) // the idle one left, the busy one stays
	close(release)
	busy.Wait()
	waitWorkers(t, p, 0)
	var after sync.WaitGroup
	after.Add(1)
	p.Go(after.Done)
	waitOrFail(t, &after, "a function given to Go after Close did not run")
	waitWorkers(t, p, 0)
}

// waitWorkers waits until the pool has want workers.
func waitWorkers(t *testing.T, p *Pool, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.Workers() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers, want %d", p.Workers(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func waitOrFail(t *testing.T, wg *sync.WaitGroup, msg string) {
	t.Helper()
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal(msg)
	}
}

// TestEachRunsAllAtOnceAndWaits: Each's functions wait for each other, so
// they finish only if they all run at once; Each returns after all of
// them. A nil Pool does the same on new goroutines.
func TestEachRunsAllAtOnceAndWaits(t *testing.T) {
	for _, p := range []*Pool{New(2), nil} {
		const n = 5
		var started sync.WaitGroup
		started.Add(n)
		var done [n]bool
		finished := make(chan struct{})
		go func() {
			p.Each(n, func(i int) {
				started.Done()
				started.Wait()
				done[i] = true
			})
			close(finished)
		}()
		select {
		case <-finished:
		case <-time.After(5 * time.Second):
			t.Fatalf("pool %v: Each did not return: its functions did not all run at once", p)
		}
		for i, d := range done {
			if !d {
				t.Fatalf("pool %v: f(%d) had not returned when Each did", p, i)
			}
		}
		p.Close()
	}
}

package batch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// server answers requests (ints) with their double; calls wait on hold so a
// test can keep every slot busy while requests queue.
type server struct {
	hold chan struct{}

	mu      sync.Mutex
	singles int
	batches [][]int
	fail    error // the whole of every batch fails with it
}

func (s *server) config(maxInFlight, maxItems, maxBytes int) Config[int, int] {
	return Config[int, int]{
		One: func(ctx context.Context, req int) (int, error) {
			s.mu.Lock()
			s.singles++
			s.mu.Unlock()
			<-s.hold
			if req < 0 { // as Many answers it: a request that queues last may go alone
				return 0, fmt.Errorf("negative %d", req)
			}
			return 2 * req, nil
		},
		Many: func(ctx context.Context, reqs []int, deadlines []time.Time) ([]int, []error, error) {
			s.mu.Lock()
			s.batches = append(s.batches, append([]int(nil), reqs...))
			fail := s.fail
			s.mu.Unlock()
			<-s.hold
			if fail != nil {
				return nil, nil, fail
			}
			out, errs := make([]int, len(reqs)), make([]error, len(reqs))
			for i, r := range reqs {
				if r < 0 {
					errs[i] = fmt.Errorf("negative %d", r)
					continue
				}
				out[i] = 2 * r
			}
			return out, errs, nil
		},
		Size:        func(req int) int { return 10 },
		MaxInFlight: maxInFlight, MaxItems: maxItems, MaxBytes: maxBytes,
	}
}

func (s *server) calls() (int, [][]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.singles, append([][]int(nil), s.batches...)
}

type result struct {
	resp int
	err  error
}

// queue fills the one slot with request 0, queues reqs behind it, and
// returns their results once the server is let go.
func queue(t *testing.T, s *server, b *Batcher[int, int], reqs []int) []result {
	t.Helper()
	out := make([]result, len(reqs))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); b.Do(context.Background(), 0) }()
	waitUntil(t, func() bool { n, _ := s.calls(); return n == 1 })
	for i, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := b.Do(context.Background(), r)
			out[i] = result{resp, err}
		}()
	}
	waitUntil(t, func() bool { return b.Queued() == len(reqs) })
	close(s.hold)
	wg.Wait()
	return out
}

// TestBatchesRespectItemAndByteBounds: ten queued requests behind one busy
// slot leave in batches of at most MaxItems requests and MaxBytes bytes,
// each caller getting its own answer or error.
func TestBatchesRespectItemAndByteBounds(t *testing.T) {
	for _, tc := range []struct {
		name               string
		maxItems, maxBytes int
		want               []int // batch sizes; a batch of one goes as a single call
		singles            int
	}{
		{"items", 4, 1000, []int{4, 4, 2}, 1},
		{"bytes", 100, 30, []int{3, 3, 3}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &server{hold: make(chan struct{})}
			b := New(s.config(1, tc.maxItems, tc.maxBytes))
			reqs := []int{1, 2, 3, 4, -5, 6, 7, 8, 9, 10}
			got := queue(t, s, b, reqs)
			singles, batches := s.calls()
			var sizes []int
			for _, bt := range batches {
				sizes = append(sizes, len(bt))
			}
			// The callers queue in no particular order.
			if fmt.Sprint(sizes) != fmt.Sprint(tc.want) || singles != tc.singles {
				t.Fatalf("batches %v and %d single calls, want sizes %v and %d single calls (the busy one included)", batches, singles, tc.want, tc.singles)
			}
			for i, r := range reqs {
				switch {
				case r < 0 && (got[i].err == nil || got[i].err.Error() != "negative -5"):
					t.Errorf("request %d: %v, want its own error", r, got[i])
				case r >= 0 && (got[i].err != nil || got[i].resp != 2*r):
					t.Errorf("request %d: %v, want %d", r, got[i], 2*r)
				}
			}
		})
	}
}

// TestFailedBatchFailsEachRequest: a batch call that fails as a whole gives
// every request in it that error.
func TestFailedBatchFailsEachRequest(t *testing.T) {
	s := &server{hold: make(chan struct{}), fail: errors.New("connection lost")}
	b := New(s.config(1, 100, 1000))
	for i, r := range queue(t, s, b, []int{1, 2, 3}) {
		if r.err == nil || r.err.Error() != "connection lost" {
			t.Errorf("request %d: %v, want the batch's error", i, r)
		}
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDoAllSendsTogether: requests one caller has at once leave in one
// call, whether a slot is free or they must queue behind a busy one, and
// each gets its own answer or error.
func TestDoAllSendsTogether(t *testing.T) {
	check := func(t *testing.T, resps []int, errs []error) {
		t.Helper()
		for i, r := range []int{1, -2, 3} {
			switch {
			case r < 0 && (errs[i] == nil || errs[i].Error() != "negative -2"):
				t.Errorf("request %d: %v, want its own error", r, errs[i])
			case r >= 0 && (errs[i] != nil || resps[i] != 2*r):
				t.Errorf("request %d: %d, %v, want %d", r, resps[i], errs[i], 2*r)
			}
		}
	}
	t.Run("free slot", func(t *testing.T) {
		s := &server{hold: make(chan struct{})}
		close(s.hold)
		b := New(s.config(4, 100, 1000))
		resps, errs := b.DoAll(context.Background(), []int{1, -2, 3})
		check(t, resps, errs)
		if singles, batches := s.calls(); singles != 0 || fmt.Sprint(batches) != "[[1 -2 3]]" {
			t.Fatalf("%d single calls and batches %v, want one batch [1 -2 3]", singles, batches)
		}
	})
	t.Run("busy slot", func(t *testing.T) {
		s := &server{hold: make(chan struct{})}
		b := New(s.config(1, 100, 1000))
		go b.Do(context.Background(), 0)
		waitUntil(t, func() bool { n, _ := s.calls(); return n == 1 })
		done := make(chan struct{})
		var resps []int
		var errs []error
		go func() {
			defer close(done)
			resps, errs = b.DoAll(context.Background(), []int{1, -2, 3})
		}()
		waitUntil(t, func() bool { return b.Queued() == 3 })
		close(s.hold)
		<-done
		check(t, resps, errs)
		if _, batches := s.calls(); fmt.Sprint(batches) != "[[1 -2 3]]" {
			t.Fatalf("batches %v, want one batch [1 -2 3]", batches)
		}
	})
}

// TestDoAllTooLargeGoesAlone: requests that would not fit in one batch go
// as separate calls, each with its own answer.
func TestDoAllTooLargeGoesAlone(t *testing.T) {
	s := &server{hold: make(chan struct{})}
	close(s.hold)
	b := New(s.config(4, 2, 1000)) // at most 2 items per batch
	resps, errs := b.DoAll(context.Background(), []int{1, 2, 3})
	for i, r := range []int{1, 2, 3} {
		if errs[i] != nil || resps[i] != 2*r {
			t.Errorf("request %d: %d, %v, want %d", r, resps[i], errs[i], 2*r)
		}
	}
	if singles, batches := s.calls(); singles != 3 || len(batches) != 0 {
		t.Fatalf("%d single calls and batches %v, want 3 single calls", singles, batches)
	}
}

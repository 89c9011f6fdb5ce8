// Package hlc is a hybrid logical clock that yields int64 revisions: the
// wall clock in nanoseconds when it moves forward, the last value plus one
// when it does not. Revisions therefore track real time closely yet never
// repeat or go backwards on one node, and Observe carries causality from
// revisions seen elsewhere.
package hlc

import (
	"sync"
	"time"
)

// Clock is the source of wall time. Tests inject a fake.
type Clock interface {
	Now() time.Time
}

// SystemClock reads the operating system's clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// HLC hands out strictly increasing revisions.
type HLC struct {
	clock Clock
	mu    struct {
		sync.Mutex
		last int64
	}
}

// New returns an HLC reading clock.
func New(clock Clock) *HLC { return &HLC{clock: clock} }

// Next returns a revision greater than every revision returned or observed
// before.
func (h *HLC) Next() int64 {
	wall := h.clock.Now().UnixNano()
	h.mu.Lock()
	defer h.mu.Unlock()
	if wall > h.mu.last {
		h.mu.last = wall
	} else {
		h.mu.last++
	}
	return h.mu.last
}

// Observe moves the clock past a revision seen elsewhere.
func (h *HLC) Observe(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if rev > h.mu.last {
		h.mu.last = rev
	}
}

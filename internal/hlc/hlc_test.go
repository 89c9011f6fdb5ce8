package hlc

import (
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (f *fakeClock) Now() time.Time { return f.t }

func TestNextIsStrictlyIncreasingWhenClockStalls(t *testing.T) {
	fc := &fakeClock{t: time.Unix(100, 0)}
	h := New(fc)
	a := h.Next()
	b := h.Next()
	if a != time.Unix(100, 0).UnixNano() || b != a+1 {
		t.Fatalf("got %d, %d; want wall time then wall time + 1", a, b)
	}
	fc.t = time.Unix(50, 0) // the clock goes backwards
	if c := h.Next(); c != b+1 {
		t.Fatalf("after clock went back got %d, want %d", c, b+1)
	}
}

func TestObserveMovesPastRemoteRevision(t *testing.T) {
	fc := &fakeClock{t: time.Unix(100, 0)}
	h := New(fc)
	remote := time.Unix(200, 0).UnixNano()
	h.Observe(remote)
	if got := h.Next(); got != remote+1 {
		t.Fatalf("got %d, want %d", got, remote+1)
	}
	h.Observe(5) // an older revision changes nothing
	if got := h.Next(); got != remote+2 {
		t.Fatalf("got %d, want %d", got, remote+2)
	}
}

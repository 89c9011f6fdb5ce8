package node

import (
	"context"
	"testing"
	"time"

	pb "github.com/raftrix/raftrixdb/proto/raftrixpb"
)

// TestItemContexts: items whose deadlines lie within itemDeadlineSlack of
// each other share one context that ends at the latest of them, each still
// reporting its own deadline; an item without a timeout keeps the call's
// context.
func TestItemContexts(t *testing.T) {
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	now := time.Now()
	ms := func(n int64) int64 { return n * 1000 }
	items := []*pb.BatchItem{
		{TimeoutMicros: ms(1000)},
		{TimeoutMicros: 0},
		{TimeoutMicros: ms(1005)},
		{TimeoutMicros: ms(5000)},
	}
	ctxs, cancel := itemContexts(parent, now, items)
	defer cancel()

	if ctxs[1] != parent {
		t.Error("an item without a timeout does not keep the call's context")
	}
	for i, want := range map[int]time.Duration{0: time.Second, 2: 1005 * time.Millisecond, 3: 5 * time.Second} {
		if d, ok := ctxs[i].Deadline(); !ok || !d.Equal(now.Add(want)) {
			t.Errorf("item %d reports deadline %v (%v), want now+%v", i, d.Sub(now), ok, want)
		}
	}
	if ctxs[0].Done() != ctxs[2].Done() {
		t.Error("items 5 ms apart do not share a context")
	}
	if ctxs[0].Done() == ctxs[3].Done() {
		t.Error("items 4 s apart share a context")
	}
	// The shared context ends at the later of the two deadlines.
	shared := ctxs[0].(itemContext).Context
	if d, _ := shared.Deadline(); !d.Equal(now.Add(1005 * time.Millisecond)) {
		t.Errorf("the shared context ends at now+%v, want now+1.005s", d.Sub(now))
	}
	cancelParent()
	for i, c := range ctxs {
		if c.Err() == nil {
			t.Errorf("item %d's context outlives the call's", i)
		}
	}
}

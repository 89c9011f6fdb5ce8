package node

import (
	"testing"
	"time"
)

// TestWaitIdleWaitsForTheRoundInProgress holds a worker inside a round of
// range 7 and checks that waitIdle(7) returns only after that round ends,
// while waitIdle of a range no worker holds returns at once. destroyReplica
// relies on it: a round still applying a replica it is destroying would
// write that replica's keys back.
func TestWaitIdleWaitsForTheRoundInProgress(t *testing.T) {
	inRound := make(chan struct{})
	release := make(chan struct{})
	s := newScheduler(1, func(batch []scheduledRange) {
		for _, sr := range batch {
			if sr.rangeID == 7 {
				close(inRound)
				<-release
			}
		}
	})
	s.start()
	released := false
	releaseRound := func() {
		if !released {
			released = true
			close(release)
		}
	}
	// On failure too: stop waits for the worker held in the round.
	defer s.stop()
	defer releaseRound()

	s.enqueue(7, flagReady)
	<-inRound

	s.waitIdle(8) // nobody processes range 8: must not block

	idle := make(chan struct{})
	go func() {
		s.waitIdle(7)
		close(idle)
	}()
	select {
	case <-idle:
		t.Fatal("waitIdle returned while range 7's round was still running")
	case <-time.After(50 * time.Millisecond):
	}
	releaseRound()
	select {
	case <-idle:
	case <-time.After(10 * time.Second):
		t.Fatal("waitIdle did not return after range 7's round ended")
	}
}

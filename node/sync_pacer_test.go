package node

import "testing"

// The pacer holds fsyncs back only while they cover, on average, at least
// busyRoundsPerSync rounds each: not after one busy fsync among quiet ones
// (a single client's transaction), yes under sustained load, and no longer
// once the load is gone.
func TestSyncPacerSpacesSyncsOnlyUnderLoad(t *testing.T) {
	var p syncPacer
	fsync := func(rounds int) bool {
		for range rounds {
			p.roundAskedSync()
		}
		return p.interval() == syncSpacing
	}
	for i := range 20 {
		if fsync(1) {
			t.Fatalf("fsync %d of one round each is held back", i)
		}
	}
	if fsync(10) {
		t.Fatal("one fsync of 10 rounds among fsyncs of one round started the pacing")
	}
	paced := -1
	for i := range 20 {
		if fsync(10) {
			paced = i
			break
		}
	}
	if paced < 0 {
		t.Fatal("20 fsyncs of 10 rounds each did not start the pacing")
	}
	if !fsync(10) {
		t.Fatal("the pacing stopped under the same load")
	}
	stopped := false
	for range 30 {
		if !fsync(1) {
			stopped = true
			break
		}
	}
	if !stopped {
		t.Fatal("30 fsyncs of one round each did not stop the pacing")
	}
}

package node

import "testing"

// The interval after an fsync depends on how many rounds it made durable:
// none below busyRoundsPerSync (one writer: no added latency), syncSpacing
// from there on; each fsync is judged by the rounds since the previous one.
func TestSyncPacerSpacesSyncsOnlyUnderLoad(t *testing.T) {
	var p syncPacer
	if got := p.interval(); got != 0 {
		t.Fatalf("after an fsync of no round: %v, want 0", got)
	}
	for range busyRoundsPerSync - 1 {
		p.roundAskedSync()
	}
	if got := p.interval(); got != 0 {
		t.Fatalf("after an fsync of %d rounds: %v, want 0", busyRoundsPerSync-1, got)
	}
	for range busyRoundsPerSync {
		p.roundAskedSync()
	}
	if got := p.interval(); got != syncSpacing {
		t.Fatalf("after an fsync of %d rounds: %v, want %v", busyRoundsPerSync, got, syncSpacing)
	}
	p.roundAskedSync()
	if got := p.interval(); got != 0 {
		t.Fatalf("after a busy fsync, then one of a single round: %v, want 0", got)
	}
}

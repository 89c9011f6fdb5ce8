//go:build race

package placement

// raceEnabled: built with -race, so the tests that only show something
// under the race detector run.
const raceEnabled = true

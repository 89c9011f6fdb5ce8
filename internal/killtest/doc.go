// Package killtest holds a crash test of real raftrix processes: a 3-node
// cluster of "raftrix start" processes takes writes from several goroutines
// while a seeded schedule kill -9s one node at a time and restarts it on the
// same data directory and port. At the end every write whose Put returned
// success must be present with its value, in a linearizable scan and, once
// the replicas have converged, on every node.
//
// The package has only tests (this file is its documentation):
//
//	go test ./internal/killtest -run TestKillNineQuick   # 3 kills, ~20s; part of "make test"
//	scripts/kill_test.sh                                 # 50 kills, a few minutes ("make test-kill")
//
// The long test (TestKillNine) runs only with RAFTRIX_KILL_TEST=1. Both read
// these environment variables:
//
//	RAFTRIX_KILL_SEED     schedule seed (default: the clock; always printed)
//	RAFTRIX_KILL_COUNT    kills of TestKillNine (default 50)
//	RAFTRIX_KILL_WRITERS  writing goroutines (default 8)
//	RAFTRIX_KILL_KEEP=1   keep the run directory even when the test passes
//
// A failed run keeps its directory (binary, data dirs, node logs, and the
// lists of acknowledged and missing keys) and prints its path and the seed.
// The schedule (which node, when, how long it stays down) is reproducible
// from the seed; the interleaving with the writes is not.
package killtest

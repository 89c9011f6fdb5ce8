// Package node runs one RaftrixDB server process.
//
// A node owns one Pebble engine that holds every local replica (see package
// replica for the key layout), and drives all replicas with:
//
//   - a Raft scheduler: a fixed pool of workers that process the ranges
//     with work (no goroutine or timer per range, scheduler.go);
//   - one ticker that schedules a tick for every range each TickInterval;
//   - group commit: a worker collects the Ready of many ranges and writes
//     their entries and hard states in one batch with one sync, which it
//     does not wait for; a sync waiter delivers what must wait for it
//     (raft_loop.go, sync_waiter.go);
//   - a transport with one stream per peer node carrying batches of
//     messages for many ranges, and separate streams for snapshots
//     (transport.go);
//   - the gRPC services KV, Admin and Raft (server_*.go). A KV request is
//     validated first, then served where the range's leader is: locally, or
//     forwarded once to the leader's node.
//
// Errors become gRPC statuses in one place, errors.go.
package node

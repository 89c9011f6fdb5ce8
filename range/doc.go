// Package replica implements one replica of one range: a Raft group member
// whose log, hard state and state machine live in the node's shared Pebble
// engine. The folder is named range (the design's name for it); range is a Go
// keyword, so the package is called replica.
//
// Like go.etcd.io/raft itself, a Replica does no IO scheduling of its own: the
// node's scheduler decides when a replica runs, writes the Raft state of many
// replicas in one batch, syncs it in the background, sends the messages and
// calls back to apply. Replicas use Raft's asynchronous storage writes; the
// round for one replica is in ready.go.
//
// Invariants:
//   - Apply is deterministic: it reads only the command and the engine. The
//     proposer chooses revisions (a hybrid logical clock), and apply only
//     raises them to keep them strictly increasing within the range.
//   - The state-machine writes of an entry and the applied index go into the
//     same Pebble batch, so replaying the log after a crash is idempotent.
//   - Log entries are deleted (truncated) only up to the applied index. The
//     truncation is written after the apply batch in the same write-ahead
//     log, so a crash can never keep the truncation and lose the apply.
//   - A follower behind the truncation point receives a snapshot: a
//     consistent Pebble snapshot of the range's user span, streamed in chunks
//     by the node and installed atomically with the Raft state.
//   - The node's RecordCache never lags the engine: every write to a user key
//     goes through the state machine, which updates it, and a snapshot clears
//     it. It is what apply reads first ("the engine" above includes it).
package replica

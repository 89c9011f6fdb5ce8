// Package txn runs multi-key transactions across ranges with two-phase
// commit, and settles the intents that transactions leave behind.
//
// A transaction is an etcd-style TxnRequest: compares, a success branch and
// a failure branch. The Coordinator runs it:
//
//   - All keys in one range: one TxnOnePC command on that range (the 1PC
//     fast path); atomic with no extra round.
//   - Otherwise two-phase commit:
//     1. The smallest key is the primary; the transaction record lives on
//     its range, addressed by it.
//     2. Prepare: every participant range, in one Raft command, checks that
//     no other transaction holds its keys, locks them with intents
//     (carrying the write each branch would make), and evaluates its
//     compares and both branches' operations under the lock. The primary's
//     prepare also writes the PENDING record.
//     3. Decide: the branch is the AND of every compare. The commit point is
//     one compare-and-set on the record, PENDING → COMMITTED (with the
//     branch and a commit revision above every participant's revisions).
//     The same command resolves the intents on the primary's range.
//     4. Resolve: the other ranges' intents become values (or are dropped)
//     asynchronously; the client is answered right after the commit point.
//     Once every intent is resolved the record is garbage; deletions are
//     batched per range (record_gc.go).
//
// Recovery: the coordinator heartbeats its record. Anyone who meets an
// intent settles it from the record (Settle): COMMITTED → resolve forward;
// ABORTED → drop; PENDING with an expired heartbeat → abort by CAS, then
// drop; no record and the transaction is older than the expiry → write an
// ABORTED record, so the transaction can never commit later.
//
// Conflicts never wait in a cycle: a transaction whose prepare meets
// another's intent aborts the other if it is older (lower priority value,
// "wound-wait"), and otherwise aborts itself and retries with backoff
// keeping its original priority, so the oldest transaction always wins
// eventually. Single-key writes that meet an intent wait for it to be
// settled; single-key reads return the last committed value when the owner
// is still PENDING (its commit point is later than the read).
//
// Clock assumption: expiry compares the pusher's hybrid logical clock with
// the coordinator's heartbeats, so clocks must be synchronised to well
// under the expiry (default 5 s).
package txn

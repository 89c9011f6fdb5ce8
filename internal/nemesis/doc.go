// Package nemesis runs Jepsen-style tests against an in-process cluster
// (internal/faultcluster): client workloads run while a seeded nemesis
// partitions the network, slows and drops connections, and kills or crashes
// nodes; then everything heals and the histories and replicas are checked.
//
// One run (Run) is:
//
//  1. start a fresh cluster (3 nodes, 8 ranges by default; the log
//     truncation threshold is drawn from the seed so some runs exercise
//     snapshots heavily);
//  2. run the workloads and the fault schedule together:
//     - register: clients Get, Put (unique values), compare-and-set and
//     Delete a dozen keys through random nodes; every answered operation goes into a
//     porcupine history. A write whose outcome is unknown (timeout, lost
//     connection, Unavailable without a routing error) is kept with a
//     return time after everything else; operations refused before doing
//     anything (routing errors, connections never made) are dropped;
//     - set: clients insert distinct keys with put-if-absent;
//     - bank: clients move money between accounts in different ranges with
//     cross-range transactions and read every balance in one transaction
//     (see bank.go);
//     - every few seconds all clients pause together for 0.5-1.5s, so idle
//     ranges quiesce and faults also hit quiesced ranges;
//     - the nemesis also asks live nodes, through the Admin API, to transfer
//     a range's leadership, split a user range at a random key (never in
//     the system key space) and, with 4 or more nodes, move a replica; these
//     may fail during faults, and are only counted (attempted, succeeded);
//     - meanwhile invariants are sampled every 200ms (see invariants.go);
//  3. heal the network, restart every node, and require a write to every
//     range to succeed within RecoveryBound (10s);
//  4. check: the register history is linearizable per key; a linearizable
//     scan holds every acknowledged insert and no insert that failed
//     definitely; every read of all balances, during the run and after the
//     heal, saw the money conserved; replicas converge to the same applied index and equal
//     state hashes; committed log positions never changed term; at most one
//     leader per range and term; a node's descriptors never overlap, and
//     once replicas converge the newest descriptors tile the key space and
//     every replica they name exists.
//
// The fault schedule and every client's choices (operation, key, node, think
// time) come from the seed, so a run is reproducible as far as anything
// driven by wall-clock timing can be. Every violation names its seed; a run
// with violations writes its history (JSON and porcupine's HTML
// visualization), the nemesis timeline and the nodes' warnings into an output
// directory.
//
// Crashes lose every write not synced: the crashed node's connections are all
// cut first (faultcluster.Cluster.Crash), then its in-memory filesystem is
// cloned as of its last syncs, and it restarts on the clone.
package nemesis

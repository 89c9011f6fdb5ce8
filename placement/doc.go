// Package placement decides where ranges live. It keeps:
//
//   - the node registry (JoinCluster, LeaveCluster, node states) and the ID
//     counters, durable in the system range through a Store, so losing a
//     node loses none of it;
//   - node liveness, from the nodes' heartbeats;
//   - the range directory: descriptors ordered by start key in a
//     google/btree, fed by the batched range reports in those heartbeats. A
//     report never replaces a descriptor of a higher generation, and a newer
//     descriptor evicts the older ones it overlaps (after a split). The
//     directory is soft state: a new placement leader rebuilds it from one
//     round of heartbeats before it acts.
//
// and it decides (Decide, a pure function tested with datadriven scripts):
// replicas to re-create for ranges on dead or leaving nodes, splits of ranges
// that are too big or too hot, and moves of replicas and leaders that bring
// every node within ±10% (or ±1) of the mean. The Service runs those
// decisions on the placement leader, a bounded number at a time, through an
// Actuator; placement talks to nodes only through interfaces.
package placement

// Package bench is RaftrixDB's load generator: workloads, drivers for
// RaftrixDB and etcd, an open- or closed-loop runner, and HDR-histogram
// reports. NewCommand returns it as the `raftrix bench` command:
//
//	raftrix bench kv   --read-fraction 0.95 --key-dist zipfian --clients 64 --duration 30s
//	raftrix bench ycsb --workload A --rate 5000 --warmup 5s --json out.json
//	raftrix bench ycsb --workload B --driver etcd --endpoints 127.0.0.1:2379,127.0.0.1:22379
//	raftrix bench txn  --keys-per-txn 4 --ranges-per-txn 4 --ranges 64 --clients 64
//	raftrix bench bank --accounts 1000 --clients 32
//	raftrix bench summary results/
//
// scripts/bench.sh runs the standard suite against fresh local RaftrixDB and
// etcd clusters; BENCHMARKS.md has its results.
//
// # Pieces
//
//   - A Spec (workload.go) is an operation mix (read, update, insert, scan,
//     read-modify-write, transaction, transfer) over a key space with a key
//     distribution. The kv workload (workload_kv.go), the YCSB core
//     workloads A–F (workload_ycsb.go), the txn workload (workload_txn.go)
//     and the bank (workload_bank.go) are all Specs, so every workload runs
//     unchanged on every driver.
//   - A Driver (driver.go) is the five operations a workload needs; a
//     TxnDriver adds the multi-key transaction of txn and bank. The raftrix
//     driver uses RaftrixDB's Go client (package client), which sends each
//     request straight to the leader of its key's range, with no forwarding
//     hop (one KV.Txn per transaction, to the range's leader when its keys
//     lie in one range, else to the leader of its smallest key's range,
//     which coordinates it); the etcd driver uses go.etcd.io/etcd/client/v3 (one
//     Txn). Both send the same bytes for the same key and value, and both
//     read linearizably.
//   - The runner (runner.go) runs --clients workers over --conns
//     connections (etcd; the raftrix client keeps one connection per node),
//     for --duration or --total operations, closed loop or at a fixed
//     --rate, and records every operation in a recorder.
//   - The report (report.go) turns the recorder's histograms into a live
//     line per second (stderr), a final table (stdout) and, with --json, a
//     JSON file (see Report); summary.go puts several such files side by
//     side, RaftrixDB beside etcd.
//   - With --cpu-pids (cpu.go), the report adds the CPU time of the store's
//     server processes and of the bench process itself over the measured
//     window, and the CPU per completed operation: the cost of a replicated
//     write, whichever process pays it.
//
// # Keys
//
// Key i is, for the default --key-size 16:
//
//	[2-byte prefix]["user"][i, zero-padded decimal, key-size-6 digits]
//
// The prefix is the top 16 bits of i times 2^64/φ (Fibonacci hashing). The
// bootstrap split cuts the key space evenly by the first two key bytes, so
// a plain "user…" prefix would put every key in one range; the hashed
// prefix spreads the keys evenly over 0..65535 whatever their number, and
// consecutive (and so the hottest zipfian) indices land far apart. Scans
// start at a chosen key and read the next keys in byte order, which is
// hashed order, as YCSB does with insertorder=hashed. No prefix is 0xFFFF:
// RaftrixDB reserves keys starting 0xFF 0xFF for its system range.
//
// The txn workload controls which range each key lands in with the same
// trick (keys_ranges.go): its key i is [a prefix inside range i mod R]
// ["txn-"][i], for a cluster of R evenly split initial ranges (--ranges),
// so a transaction picks N ranges and then keys inside them. The bank's
// accounts are hashed like the kv keys but tagged "acct". The tags keep the
// workloads' keys apart on a shared cluster.
//
// # Latency and coordinated omission
//
// With --rate R the runner is open loop: operation k has the intended start
// time start + k/R, fixed in advance. A worker waits for that time (or
// starts at once when it is late) and the latency recorded is from the
// intended start to the end, so time spent queued behind a slow operation
// counts, instead of being hidden by the client slowing down (coordinated
// omission). --clients bounds the operations in flight; when it is too
// small for the rate the schedule falls behind and the latencies show it; a
// live line then says how far behind, and operations still unstarted when
// the measured time ends are counted in the report (Report.Unstarted), so
// that the run ends on time yet hides nothing.
// With --rate 0 the runner is closed loop: each worker starts its next
// operation when the last one ends, and latency is service time.
//
// Operations that fail are counted by gRPC code name and kept out of the
// latency histograms; the runner retries nothing during the measured run
// (the store clients' own retries, such as the raftrix client's retry of a
// write its leader refused, are part of one operation and its latency). A
// read-modify-write, transaction or transfer whose compares lose to a
// concurrent writer is a conflict, not an error; a read of a missing key is
// a miss, not an error. The bank checks after the run that the accounts'
// total is what it started as, and the command fails if not.
//
// The command is `raftrix bench`; ETCD.md shows how to start a local etcd
// cluster to compare against.
package bench

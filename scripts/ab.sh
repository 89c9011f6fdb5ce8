#!/usr/bin/env bash
# Before/after: one bench workload against two raftrix binaries, in one run,
# alternating A B A B ... so that drift of a shared machine hits both.
#
# Each round starts a fresh 3-node cluster (64 ranges) of a binary, waits
# for every range's leader, runs the workload (loading its keys first, not
# measured) with --cpu-pids, and stops the cluster. Prints one line per run
# and the B/A ratios of the medians of ops/s, p50, p99 and CPU µs/op.
#
# Usage: scripts/ab.sh [--rounds N] [--out DIR] BIN_A BIN_B -- BENCH-ARGS...
#   e.g. git worktree add /tmp/wa HEAD; (cd /tmp/wa && go build -o /tmp/a ./cmd/raftrix)
#        go build -o /tmp/b ./cmd/raftrix   # the working tree
#   (not git stash: it leaves new files behind, and the build of A fails)
#        scripts/ab.sh /tmp/a /tmp/b -- kv --read-fraction 0 --keys 100000 --clients 256
# Environment: RAFTRIX_PORT (first node's gRPC port, default 30001);
# RANGES (user ranges of each cluster, default 64; RANGES_B for B's
# clusters if they differ, to compare range counts with one binary);
# BENCH_A, BENCH_B (the raftrix binary whose bench tool loads A's and B's
# clusters, default BIN_B for both, so that only the servers differ; set
# them to compare bench tools, e.g. drivers, against one server binary);
# DURATION (measured time of each run, default 10s);
# START_A, START_B (extra `raftrix start` flags of A's and B's nodes, to
# compare settings with one binary, e.g. START_B="--record-cache-size 33554432").
# After each run every node's /metrics is saved as OUT/<label>-<round>-nN.metrics.
set -euo pipefail

ROUNDS=2
OUT=""
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) ROUNDS=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) break ;;
	esac
done
[ $# -ge 3 ] && [ "$3" = "--" ] || { echo "usage: scripts/ab.sh [--rounds N] BIN_A BIN_B -- BENCH-ARGS... (see --help)" >&2; exit 2; }
A=$(realpath "$1")
B=$(realpath "$2")
shift 3
OUT=${OUT:-/tmp/raftrix-ab-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
. "$(dirname "$0")/cluster.sh"
cluster_addrs "${RAFTRIX_PORT:-30001}"
WORK=""
pids=()
stop_cluster() {
	cluster_stop
	[ -n "$WORK" ] && rm -rf "$WORK"
	WORK=""
}
trap stop_cluster EXIT INT TERM

run() { # label binary round
	local label=$1 bin=$2 round=$3
	shift 3
	local ranges=${RANGES:-64} extra=${START_A:-}
	[ "$label" = B ] && ranges=${RANGES_B:-$ranges} && extra=${START_B:-}
	WORK=$(mktemp -d /tmp/raftrix-ab.XXXXXX)
	# $extra is split into flags on purpose.
	# shellcheck disable=SC2086
	cluster_start "$bin" "$WORK" "$ranges" "$OUT/$label-$round-n" $extra
	cluster_wait "$bin" "$ranges"
	local bench=${BENCH_B:-$B} cpu=()
	[ "$label" = A ] && bench=${BENCH_A:-$B}
	# Older bench tools cannot measure CPU.
	if "$bench" bench kv --help 2>/dev/null | grep -q -- --cpu-pids; then
		cpu=(--cpu-pids "$(IFS=,; echo "${pids[*]}")")
	fi
	"$bench" bench "$@" --endpoints "$EPS" "${cpu[@]}" --warmup 2s --duration "${DURATION:-10s}" \
		--json "$OUT/$label-$round.json" >"$OUT/$label-$round.txt" 2>&1
	for i in 1 2 3; do
		curl -s "http://$(cluster_http $i)/metrics" >"$OUT/$label-$round-n$i.metrics" || true
	done
	stop_cluster
	python3 - "$OUT/$label-$round.json" "$label" "$round" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["total"]
l = t["latency_us"]
print(f'{sys.argv[2]} round {sys.argv[3]}: {t["ops_per_sec"]:9.1f} ops/s  p50 {l["p50"] / 1000:7.2f} ms  p99 {l["p99"] / 1000:7.2f} ms  CPU {r.get("cpu_us_per_op", 0):7.1f} us/op')
EOF
}

for round in $(seq 1 "$ROUNDS"); do
	if [ $((round % 2)) = 1 ]; then
		run A "$A" "$round" "$@"; run B "$B" "$round" "$@"
	else
		run B "$B" "$round" "$@"; run A "$A" "$round" "$@"
	fi
done
python3 - "$OUT" <<'EOF'
import json, glob, statistics, sys
out = sys.argv[1]
def med(label, f):
    return statistics.median(f(json.load(open(p))) for p in sorted(glob.glob(f"{out}/{label}-*.json")))
for name, f in [("ops/s", lambda r: r["total"]["ops_per_sec"]), ("p50 ms", lambda r: r["total"]["latency_us"]["p50"] / 1000),
                ("p99 ms", lambda r: r["total"]["latency_us"]["p99"] / 1000), ("CPU us/op", lambda r: r.get("cpu_us_per_op", 0))]:
    a, b = med("A", f), med("B", f)
    print(f"{name:10s} A {a:9.2f}  B {b:9.2f}  B/A {b / a if a else float('nan'):.2f}")
EOF
echo "results in $OUT"

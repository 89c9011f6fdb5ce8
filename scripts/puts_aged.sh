#!/usr/bin/env bash
# Puts on a fresh engine against puts on an engine that already holds the
# other workloads' keys: what the suite's second round of kv-write sees.
#
# Builds raftrix (or takes BIN), starts a 3-node cluster (64 ranges) with
# its HTTP endpoints on, and runs, on that one cluster:
#   1. "fresh": kv-write (256 clients, 100,000 keys, loaded first);
#   2. ycsb-A and the 1-range and 4-range transactions for 5 s each (their
#      loads fill the engine with their own 100,000 keys each);
#   3. "aged": kv-write again.
# For both kv-write runs it prints the bench tool's CPU line (CPU µs/op) and
# node 1's record cache hit rate, and saves node 1's CPU profile (inside the
# run, 5 s shorter) and every node's storage engine report (/debug/pebble:
# bytes flushed and compacted per level) and /metrics before and after the
# run, as OUT/<fresh|aged>-*.
#
# Usage: scripts/puts_aged.sh [--out DIR] [--duration SECONDS]
# Environment: BIN (a raftrix binary; default: build this tree), START
# (extra flags for every node's `raftrix start`, e.g. "--record-cache-size 268435456"),
# RAFTRIX_PORT (first node's gRPC port, default 31001; HTTP ports +1000).
set -euo pipefail

OUT=""
DURATION=20
while [ $# -gt 0 ]; do
	case "$1" in
	--out) OUT=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "unknown flag $1 (see --help)" >&2; exit 2 ;;
	esac
done
OUT=${OUT:-/tmp/raftrix-aged-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
WORK=$(mktemp -d)
pids=()
. "$(dirname "$0")/cluster.sh"
cleanup() {
	cluster_stop
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then
	go build -o "$WORK/raftrix" ./cmd/raftrix
	BIN=$WORK/raftrix
fi
cluster_addrs "${RAFTRIX_PORT:-31001}"
# shellcheck disable=SC2086 # START is a list of flags
cluster_start "$BIN" "$WORK" 64 "$OUT/n" ${START:-}
cluster_wait "$BIN" 64
CPU_PIDS=$(IFS=,; echo "${pids[*]}")

engine_reports() { # file-prefix
	for i in 1 2 3; do
		curl -sf -o "$OUT/$1-n$i.pebble.txt" "http://$(cluster_http $i)/debug/pebble"
		curl -sf -o "$OUT/$1-n$i.metrics.txt" "http://$(cluster_http $i)/metrics"
	done
}

# record_cache_hit_rate LABEL: node 1's record cache hits per lookup
# during the run (its load included).
record_cache_hit_rate() {
	awk '/^raftrix_record_cache_(hits|misses)_total/ {
		v = (FILENAME ~ /after/) ? $2 : -$2
		if ($1 ~ /hits/) h += v; else m += v
	} END { if (h + m > 0) printf "%.1f%% hits of %d lookups\n", 100 * h / (h + m), h + m }' \
		"$OUT/$1-before-n1.metrics.txt" "$OUT/$1-after-n1.metrics.txt"
}

puts() { # label
	engine_reports "$1-before"
	"$BIN" bench kv --read-fraction 0 --keys 100000 --clients 256 --endpoints "$EPS" \
		--cpu-pids "$CPU_PIDS" --warmup 2s --duration "${DURATION}s" >"$OUT/$1.txt" 2>&1 &
	local bench=$!
	until grep -q "warmup" "$OUT/$1.txt" 2>/dev/null; do
		kill -0 $bench 2>/dev/null || { cat "$OUT/$1.txt"; exit 1; }
		sleep 0.5
	done
	sleep 3
	curl -sf -o "$OUT/$1-n1.cpu.pb.gz" "http://$(cluster_http 1)/debug/pprof/profile?seconds=$((DURATION > 6 ? DURATION - 5 : 1))"
	wait $bench
	engine_reports "$1-after"
	echo "$1: $(grep 'per op' "$OUT/$1.txt")"
	echo "$1: node 1 record cache: $(record_cache_hit_rate "$1")"
}

puts fresh
"$BIN" bench ycsb --workload A --keys 100000 --clients 256 --endpoints "$EPS" \
	--warmup 1s --duration 5s >"$OUT/ycsb-A.txt" 2>&1
for r in 1 4; do
	"$BIN" bench txn --keys-per-txn 4 --ranges-per-txn $r --ranges 64 --keys 100000 --clients 256 \
		--endpoints "$EPS" --warmup 1s --duration 5s >"$OUT/txn-${r}range.txt" 2>&1
done
puts aged
cp "$BIN" "$OUT/raftrix"
echo "results in $OUT (go tool pprof $OUT/raftrix $OUT/aged-n1.cpu.pb.gz)"

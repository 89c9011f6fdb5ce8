#!/usr/bin/env bash
# CPU and allocation profiles of all three nodes of a local cluster under
# one bench workload: where the time goes before anything is changed.
#
# Builds raftrix, starts 3 `raftrix start` processes (64 ranges, as
# scripts/bench.sh does) with their HTTP endpoints on, loads the keys, then
# runs the workload and, while it runs, takes a CPU profile of every node
# for --seconds and an allocation profile at the end. Prints the top
# functions of each node's CPU profile (flat and cumulative) and writes the
# raw profiles to OUT/nN.cpu.pb.gz, OUT/nN.allocs.pb.gz, and the storage
# engine's report (/debug/pebble: LSM levels, bytes flushed and compacted)
# to OUT/nN.pebble.txt.
#
# Usage: scripts/profile.sh [--out DIR] [--seconds N] [--] BENCH-ARGS...
#   e.g. scripts/profile.sh -- kv --read-fraction 0 --keys 100000 --clients 256
# Environment: RAFTRIX_PORT (first node's gRPC port, default 29001; HTTP
# ports are +1000).
set -euo pipefail

OUT=""
SECONDS_PROFILED=15
while [ $# -gt 0 ]; do
	case "$1" in
	--out) OUT=$2; shift 2 ;;
	--seconds) SECONDS_PROFILED=$2; shift 2 ;;
	--) shift; break ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) break ;;
	esac
done
[ $# -gt 0 ] || set -- kv --read-fraction 0 --keys 100000 --clients 256
OUT=${OUT:-/tmp/raftrix-profile-$(date +%Y%m%d-%H%M%S)}
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
go build -o "$WORK/raftrix" ./cmd/raftrix
BIN=$WORK/raftrix
cluster_addrs "${RAFTRIX_PORT:-29001}"
cluster_start "$BIN" "$WORK" 64 "$OUT/n"
cluster_wait "$BIN" 64

# Long enough that the profile window lies inside the measured run.
"$BIN" bench "$@" --endpoints "$EPS" --warmup 3s --duration $((SECONDS_PROFILED + 5))s \
	--json "$OUT/bench.json" >"$OUT/bench.txt" 2>&1 &
bench=$!
# Profile the measured run, not the loading of keys before it.
until grep -q "warmup" "$OUT/bench.txt" 2>/dev/null; do
	kill -0 $bench 2>/dev/null || { cat "$OUT/bench.txt"; exit 1; }
	sleep 0.5
done
sleep 3
curls=()
for i in 1 2 3; do
	curl -sf -o "$OUT/n$i.cpu.pb.gz" "http://$(cluster_http $i)/debug/pprof/profile?seconds=$SECONDS_PROFILED" &
	curls+=($!)
done
wait "${curls[@]}"
for i in 1 2 3; do
	curl -sf -o "$OUT/n$i.allocs.pb.gz" "http://$(cluster_http $i)/debug/pprof/allocs"
	curl -sf -o "$OUT/n$i.pebble.txt" "http://$(cluster_http $i)/debug/pebble" || true
done
wait "$bench"
cat "$OUT/bench.txt"
for i in 1 2 3; do
	echo "=== node $i: CPU, flat"
	go tool pprof -top -nodecount=25 "$BIN" "$OUT/n$i.cpu.pb.gz" 2>/dev/null | sed -n '1,32p'
	echo "=== node $i: CPU, cumulative"
	go tool pprof -top -cum -nodecount=40 "$BIN" "$OUT/n$i.cpu.pb.gz" 2>/dev/null | sed -n '6,46p'
done
cp "$BIN" "$OUT/raftrix"
echo "profiles in $OUT (go tool pprof $OUT/raftrix $OUT/n1.cpu.pb.gz)"

#!/usr/bin/env bash
# Many ranges on a local 3-node cluster of raftrix processes: once idle,
# report CPU (% of one core) and RSS per node; then kill -9 the node that
# leads the most ranges and report how long until every range it led has a
# new leader. Usage: scripts/bench_ranges.sh [RANGES] (default 10000).
set -euo pipefail
RANGES=${1:-10000}
IDLE_WAIT=${IDLE_WAIT:-30}     # seconds to let elections and quiescence settle
MEASURE=${MEASURE:-20}         # seconds of CPU measurement
cd "$(dirname "$0")/.."
DIR=$(mktemp -d)
BIN=$DIR/raftrix
go build -o "$BIN" ./cmd/raftrix
PEERS=1=127.0.0.1:17001,2=127.0.0.1:17002,3=127.0.0.1:17003
EPS=127.0.0.1:17001,127.0.0.1:17002,127.0.0.1:17003
declare -A PID
cleanup() {
	for p in "${PID[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	rm -rf "$DIR"
}
trap cleanup EXIT
for id in 1 2 3; do
	"$BIN" start --id $id --data-dir "$DIR/n$id" --peers $PEERS --ranges "$RANGES" --insecure \
		--http-addr 127.0.0.1:1800$id --log-level warn 2>"$DIR/n$id.log" &
	PID[$id]=$!
done

echo "waiting for $RANGES ranges (+ the system range) to elect leaders..."
start=$(date +%s.%N)
while :; do
	led=$("$BIN" ranges --endpoints 127.0.0.1:17001 --timeout 30s 2>/dev/null | awk 'NR>1 && $5 != "none"' | wc -l || true)
	[ "$led" -ge "$((RANGES + 1))" ] && break
	sleep 1
done
echo "all ranges led after $(echo "$(date +%s.%N) - $start" | bc) s"
sleep "$IDLE_WAIT"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
declare -A T0
for id in 1 2 3; do T0[$id]=$(ticks "${PID[$id]}"); done
sleep "$MEASURE"
echo
echo "idle, $RANGES ranges, measured over ${MEASURE}s:"
printf "%-6s %-12s %-10s %-8s\n" NODE "CPU(%core)" "RSS(MiB)" TICKING
for id in 1 2 3; do
	t1=$(ticks "${PID[$id]}")
	cpu=$(echo "scale=2; ($t1 - ${T0[$id]}) * 100 / $hz / $MEASURE" | bc)
	rss=$(awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/${PID[$id]}/status")
	ticking=$(curl -s "http://127.0.0.1:1800$id/metrics" 2>/dev/null | awk '/^raftrix_ranges_ticking/ {print $2}')
	printf "%-6s %-12s %-10s %-8s\n" "$id" "$cpu" "$rss" "${ticking:-?}"
done

# The node leading the most ranges.
victim=$("$BIN" ranges --endpoints 127.0.0.1:17001 --timeout 30s | awk 'NR>1 {c[$5]++} END {m=0; for (n in c) if (c[n] > m) {m=c[n]; v=n}; print v}')
count=$("$BIN" ranges --endpoints 127.0.0.1:17001 --timeout 30s | awk -v v="$victim" 'NR>1 && $5 == v' | wc -l)
survivor=$(( victim == 1 ? 2 : 1 ))
echo
echo "kill -9 node $victim, which leads $count ranges"
kill -9 "${PID[$victim]}"
unset "PID[$victim]"
start=$(date +%s.%N)
while :; do
	left=$("$BIN" ranges --endpoints 127.0.0.1:1700$survivor --timeout 30s 2>/dev/null | awk -v v="$victim" 'NR>1 && ($5 == v || $5 == "none")' | wc -l || echo 999999)
	[ "$left" -eq 0 ] && break
	sleep 0.5
done
echo "every range has a live leader again after $(echo "$(date +%s.%N) - $start" | bc) s"

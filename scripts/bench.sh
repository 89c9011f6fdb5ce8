#!/usr/bin/env bash
# The standard benchmark suite: RaftrixDB against etcd, side by side.
#
# Builds raftrix (into its temporary directory), starts a 3-node RaftrixDB cluster of `raftrix start`
# processes (64 ranges unless --ranges says) in a temporary directory and, when an etcd binary
# is found ($ETCD, else /tmp/etcdbin/etcd; see bench/ETCD.md to build one), a
# 3-member etcd cluster on loopback beside it. Then runs, for each client
# count (1: latency; 256: throughput):
#
#   kv-write    raftrix bench kv --read-fraction 0        100% blind writes
#   kv-read95   raftrix bench kv --read-fraction 0.95     95% reads
#   ycsb-A      raftrix bench ycsb --workload A           50/50, zipfian
#   txn-1range  raftrix bench txn --keys-per-txn 4 --ranges-per-txn 1
#   txn-4range  raftrix bench txn --keys-per-txn 4 --ranges-per-txn 4
#
# and, only when --only names it:
#
#   bank        raftrix bench bank --accounts 10000   two-account transfers
#
# alternating the two stores run by run (RaftrixDB first for one workload,
# etcd first for the next), so that drift of this shared machine hits both.
# Every RaftrixDB run also reports its nodes' mean group-commit sync (the
# disk's pace, which the puts follow; from /metrics).
# Every run also measures CPU (bench --cpu-pids): the user+system CPU time
# of the store's three server processes and of the bench client over the
# measured time, and their sum per completed operation (CPU µs/op).
# Each run writes OUT/<workload>-c<clients>-<store>.{json,txt,log}; at the
# end OUT/summary.md has the table with RaftrixDB/etcd ratios, and
# OUT/machine.txt what it ran on. Both clusters are stopped and their
# directories removed on exit, Ctrl-C included.
#
# Usage: scripts/bench.sh [flags]
#   --duration D     measured time of each run (default 10s)
#   --warmup D       unmeasured time before it (default 2s)
#   --clients "A B"  client counts (default "1 256")
#   --keys N         keys of kv and ycsb (default 100000)
#   --txn-keys N     keys of the txn workloads (default 100000, as kv:
#                    transactions on N uniform keys conflict about 1/N as
#                    often, so 256 clients should see about half the ~7%
#                    conflicts of 50000 keys; each txn run reloads its keys,
#                    16 per transaction, which takes about twice as long)
#   --ranges N       RaftrixDB's user ranges (default 64; the txn workloads
#                    place their keys by it)
#   --only "W ..."   run only these workloads (names above; bank runs only
#                    when named here)
#   --rounds N       run the whole list N times (default 1); the summary
#                    shows the mean of the N runs of each cell
#   --out DIR        results directory (default /tmp/raftrix-bench-<time>)
#   --no-etcd        RaftrixDB only
# Environment: ETCD (etcd binary), RAFTRIX_PORT (first node's gRPC port,
# default 27001; nodes use it and the next two, HTTP ports +1000),
# ETCD_PORT (first member's client port, default 24001; clients use it and
# the next two, peers +10).
set -euo pipefail

DURATION=10s
WARMUP=2s
CLIENTS="1 256"
KEYS=100000
TXN_KEYS=100000
RANGES=64
ONLY=""
ROUNDS=1
OUT=""
USE_ETCD=1
while [ $# -gt 0 ]; do
	case "$1" in
	--duration) DURATION=$2; shift 2 ;;
	--warmup) WARMUP=$2; shift 2 ;;
	--clients) CLIENTS=$2; shift 2 ;;
	--keys) KEYS=$2; shift 2 ;;
	--txn-keys) TXN_KEYS=$2; shift 2 ;;
	--ranges) RANGES=$2; shift 2 ;;
	--only) ONLY=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--no-etcd) USE_ETCD=0; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "unknown flag $1 (see --help)" >&2; exit 2 ;;
	esac
done

cd "$(dirname "$0")/.."
REPO=$(pwd)
OUT=${OUT:-/tmp/raftrix-bench-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d /tmp/raftrix-bench-work.XXXXXX)
RAFTRIX_PORT=${RAFTRIX_PORT:-27001}
ETCD_PORT=${ETCD_PORT:-24001}

PIDS=()
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ ${#PIDS[@]} -gt 0 ]; then
		kill "${PIDS[@]}" 2>/dev/null || true
		# Wait for a clean exit before removing the data directories; kill
		# whatever is still up after 15 seconds.
		for _ in $(seq 150); do
			local alive=0
			for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
			[ $alive = 0 ] && break
			sleep 0.1
		done
		kill -9 "${PIDS[@]}" 2>/dev/null || true
		wait "${PIDS[@]}" 2>/dev/null || true
	fi
	# Keep the server logs with the results when something went wrong.
	if [ $rc != 0 ]; then cp "$WORK"/*.log "$OUT"/ 2>/dev/null || true; fi
	rm -rf "$WORK"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "== $*" >&2; }

port_free() { ! ss -ltnH "( sport = :$1 )" 2>/dev/null | grep -q .; }

# --- build ---------------------------------------------------------------
log "building raftrix"
go build -o "$WORK/raftrix" ./cmd/raftrix
BIN=$WORK/raftrix

ETCD_BIN=""
if [ $USE_ETCD = 1 ]; then
	for c in "${ETCD:-}" /tmp/etcdbin/etcd; do
		if [ -n "$c" ] && [ -x "$c" ]; then ETCD_BIN=$c; break; fi
	done
	[ -z "$ETCD_BIN" ] && log "no etcd binary (set ETCD or see bench/ETCD.md): RaftrixDB only"
fi

# --- RaftrixDB: three `raftrix start` processes --------------------------
RX_EPS=""
RX_PEERS=""
for i in 1 2 3; do
	p=$((RAFTRIX_PORT + i - 1))
	port_free $p && port_free $((p + 1000)) || { echo "port $p or $((p + 1000)) is in use; set RAFTRIX_PORT" >&2; exit 1; }
	RX_EPS+="${RX_EPS:+,}127.0.0.1:$p"
	RX_PEERS+="${RX_PEERS:+,}$i=127.0.0.1:$p"
done
log "starting RaftrixDB: 3 nodes, $RANGES ranges, on $RX_EPS"
for i in 1 2 3; do
	"$BIN" start --id $i --data-dir "$WORK/raftrix-n$i" --peers "$RX_PEERS" --ranges $RANGES \
		--insecure --log-level warn 2>"$WORK/raftrix-n$i.log" &
	PIDS+=($!)
done
deadline=$((SECONDS + 60))
until led=$("$BIN" ranges --endpoints "$RX_EPS" --timeout 5s 2>/dev/null | awk 'NR > 1 && $5 != "none"' | wc -l) &&
	[ "$led" -ge $((RANGES + 1)) ]; do
	[ $SECONDS -lt $deadline ] || { echo "RaftrixDB: not every range has a leader after 60s" >&2; exit 1; }
	sleep 0.5
done
log "RaftrixDB: all $((RANGES + 1)) ranges have leaders"

# --- etcd: three members on loopback, as in bench/ETCD.md ----------------
ET_EPS=""
if [ -n "$ETCD_BIN" ]; then
	cluster=""
	for i in 1 2 3; do
		c=$((ETCD_PORT + i - 1)) p=$((ETCD_PORT + 9 + i))
		port_free $c && port_free $p || { echo "port $c or $p is in use; set ETCD_PORT" >&2; exit 1; }
		cluster+="${cluster:+,}m$i=http://127.0.0.1:$p"
		ET_EPS+="${ET_EPS:+,}127.0.0.1:$c"
	done
	log "starting etcd ($("$ETCD_BIN" --version | head -1)): 3 members on $ET_EPS"
	for i in 1 2 3; do
		c=$((ETCD_PORT + i - 1)) p=$((ETCD_PORT + 9 + i))
		"$ETCD_BIN" --name m$i --data-dir "$WORK/etcd-m$i" \
			--listen-client-urls http://127.0.0.1:$c --advertise-client-urls http://127.0.0.1:$c \
			--listen-peer-urls http://127.0.0.1:$p --initial-advertise-peer-urls http://127.0.0.1:$p \
			--initial-cluster "$cluster" --initial-cluster-token bench --initial-cluster-state new \
			--log-level warn >"$WORK/etcd-m$i.log" 2>&1 &
		PIDS+=($!)
	done
	deadline=$((SECONDS + 60))
	until curl -fs "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"'; do
		[ $SECONDS -lt $deadline ] || { echo "etcd: not healthy after 60s" >&2; exit 1; }
		sleep 0.5
	done
	log "etcd: healthy"
fi

# --- the machine -----------------------------------------------------------
idle_cpu() { # idle_cpu SECONDS PID... : their CPU use, in % of one core
	local hz t0=0 t1=0 p
	hz=$(getconf CLK_TCK)
	for p in "${@:2}"; do t0=$((t0 + $(awk '{print $14 + $15}' /proc/$p/stat))); done
	sleep "$1"
	for p in "${@:2}"; do t1=$((t1 + $(awk '{print $14 + $15}' /proc/$p/stat))); done
	echo $(((t1 - t0) * 100 / hz / $1))
}
sleep 3 # let the fresh clusters settle before measuring them idle
{
	echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "commit:    $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
	echo "cpus:      $(nproc) x $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
	echo "memory:    $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
	dev=$(df --output=source "$WORK" | tail -1)
	echo "data disk: $dev ($(df --output=fstype "$WORK" | tail -1)), rotational flag $(cat /sys/block/"$(basename "$dev" | sed 's/[0-9]*$//')"/queue/rotational 2>/dev/null || echo '?')"
	echo "fsync:     $(dd if=/dev/zero of="$WORK/dsync.test" bs=4k count=200 oflag=dsync 2>&1 | awk -F', ' 'END {split($(NF-1), t, " "); printf "%.2f ms per synchronous 4 KiB write (dd oflag=dsync)", t[1] * 1000 / 200}')"
	rm -f "$WORK/dsync.test"
	echo "go:        $(go version)"
	[ -n "$ETCD_BIN" ] && echo "etcd:      $("$ETCD_BIN" --version | tr '\n' ' ')"
	echo "idle CPU:  RaftrixDB cluster $(idle_cpu 5 "${PIDS[@]:0:3}")% of a core$([ -n "$ETCD_BIN" ] && echo ", etcd cluster $(idle_cpu 5 "${PIDS[@]:3:3}")% of a core")"
	echo "load avg:  $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) before the suite"
	echo "suite:     --duration $DURATION --warmup $WARMUP --clients \"$CLIENTS\" --keys $KEYS --txn-keys $TXN_KEYS, $RANGES ranges"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# --- the suite -------------------------------------------------------------
WORKLOADS=(
	"kv-write|kv --read-fraction 0 --keys $KEYS|user"
	"kv-read95|kv --read-fraction 0.95 --keys $KEYS|user"
	"ycsb-A|ycsb --workload A --keys $KEYS|user"
	"txn-1range|txn --keys-per-txn 4 --ranges-per-txn 1 --ranges $RANGES --keys $TXN_KEYS|txn"
	"txn-4range|txn --keys-per-txn 4 --ranges-per-txn 4 --ranges $RANGES --keys $TXN_KEYS|txn"
	"bank|bank --accounts 10000|bank|opt-in"
)
STORES=(raftrix)
[ -n "$ETCD_BIN" ] && STORES+=(etcd)
declare -A LOADED # store:keyspace -> 1 once loaded
FAILED=0

# The server processes whose CPU each run measures: PIDS holds RaftrixDB's
# three nodes, then etcd's three members.
RX_PIDS=$(IFS=,; echo "${PIDS[*]:0:3}")
ET_PIDS=""
[ -n "$ETCD_BIN" ] && ET_PIDS=$(IFS=,; echo "${PIDS[*]:3:3}")

# raft_syncs prints the sum of seconds and the count of the RaftrixDB nodes'
# group-commit syncs so far (raftrix_engine_raft_sync_seconds, all three
# nodes). Their mean over a run is how long a round's appends took to be
# durable: the disk's pace (BENCHMARKS.md; since the Raft rounds stopped
# waiting for their syncs it includes the wait behind earlier syncs).
raft_syncs() {
	local i
	for i in 1 2 3; do
		curl -fs "http://127.0.0.1:$((RAFTRIX_PORT + i - 1 + 1000))/metrics" || true
	done | awk '/^raftrix_engine_raft_sync_seconds_sum/ {s += $2} /^raftrix_engine_raft_sync_seconds_count/ {c += $2} END {printf "%.6f %d\n", s, c}'
}

run() { # run STORE NAME CLIENTS ARGS... (KEYSPACE: the workload's keys)
	local store=$1 name=$2 clients=$3 eps pids load=true
	shift 3
	eps=$RX_EPS pids=$RX_PIDS
	[ "$store" = etcd ] && eps=$ET_EPS pids=$ET_PIDS
	# kv and ycsb share their keys: load them once per store. The txn
	# workload loads every time: the load tells it its keys' revisions.
	if [ "$KEYSPACE" = user ] && [ -n "${LOADED[$store:user]:-}" ]; then load=false; fi
	local base="$OUT/$name-c$clients-$store-r$ROUND"
	log "round $ROUND: $name, $clients clients, $store (load average $(cut -d' ' -f1 /proc/loadavg))"
	echo "load average before: $(cat /proc/loadavg)" >"$base.log"
	local syncs_before=""
	[ "$store" = raftrix ] && syncs_before=$(raft_syncs)
	if "$BIN" bench "$@" --driver "$store" --endpoints "$eps" --cpu-pids "$pids" --clients "$clients" \
		--duration "$DURATION" --warmup "$WARMUP" --load=$load --label "$name" \
		--json "$base.json" >"$base.txt" 2>>"$base.log"; then
		if [ -n "$syncs_before" ]; then
			local secs0 n0 secs1 n1
			read -r secs0 n0 <<<"$syncs_before"
			read -r secs1 n1 <<<"$(raft_syncs)"
			[ "$n1" -gt "$n0" ] && awk -v n="$((n1 - n0))" -v t0="$secs0" -v t1="$secs1" \
				'BEGIN {printf "Raft syncs (3 nodes, load and warmup included): %d, mean %.3f ms\n", n, 1000 * (t1 - t0) / n}' >>"$base.txt"
		fi
		sed 's/^/   /' "$base.txt" >&2
		LOADED[$store:$KEYSPACE]=1
	else
		echo "   FAILED: $(tail -3 "$base.log")" >&2
		FAILED=1
	fi
}

n=0
for ROUND in $(seq 1 "$ROUNDS"); do
	for w in "${WORKLOADS[@]}"; do
		IFS='|' read -r name args KEYSPACE optin <<<"$w"
		if [ -n "$ONLY" ] && ! [[ " $ONLY " == *" $name "* ]]; then continue; fi
		if [ -z "$ONLY" ] && [ -n "$optin" ]; then continue; fi
		# Alternate which store goes first, workload by workload.
		order=("${STORES[@]}")
		if [ ${#STORES[@]} = 2 ] && [ $((n % 2)) = 1 ]; then order=(etcd raftrix); fi
		n=$((n + 1))
		for c in $CLIENTS; do
			for s in "${order[@]}"; do
				# shellcheck disable=SC2086 # args is a list of flags
				run "$s" "$name" "$c" $args
			done
		done
	done
done

"$BIN" bench summary "$OUT" >"$OUT/summary.md"
echo
cat "$OUT/summary.md"
echo
echo "results: $OUT"
[ $FAILED = 0 ]

# A local 3-node RaftrixDB cluster for the measuring scripts (ab.sh,
# profile.sh, puts_aged.sh). Sourced, not run.
#
# Node i (1, 2, 3) serves gRPC on PORT+i-1 and HTTP (/metrics, /debug/pprof,
# /debug/pebble) on PORT+1000+i-1.

# cluster_addrs PORT: sets PEERS (for --peers) and EPS (for --endpoints).
cluster_addrs() {
	local port=$1
	PEERS="1=127.0.0.1:$port,2=127.0.0.1:$((port + 1)),3=127.0.0.1:$((port + 2))"
	EPS="127.0.0.1:$port,127.0.0.1:$((port + 1)),127.0.0.1:$((port + 2))"
	CLUSTER_PORT=$port
}

# cluster_start BIN WORKDIR RANGES LOGPREFIX [START-FLAGS...]: starts the
# three nodes in WORKDIR/n1..n3, each logging to LOGPREFIXi.log, and appends
# their pids to the caller's pids array. Needs cluster_addrs first.
cluster_start() {
	local bin=$1 work=$2 ranges=$3 logs=$4
	shift 4
	local i
	for i in 1 2 3; do
		"$bin" start --id $i --data-dir "$work/n$i" --peers "$PEERS" --ranges "$ranges" --insecure "$@" \
			--http-addr "127.0.0.1:$((CLUSTER_PORT + 1000 + i - 1))" --log-level warn 2>"$logs$i.log" &
		pids+=($!)
	done
}

# cluster_wait BIN RANGES: returns once every range (RANGES user ranges and
# the system range) has a leader; fails if a node exits, or after two
# minutes.
cluster_wait() {
	local bin=$1 ranges=$2 deadline=$((SECONDS + 120)) led p
	while :; do
		for p in "${pids[@]}"; do
			if ! kill -0 "$p" 2>/dev/null; then
				echo "cluster: node process $p exited (see its log)" >&2
				return 1
			fi
		done
		led=$("$bin" ranges --endpoints "$EPS" --timeout 5s 2>/dev/null | awk 'NR > 1 && $5 != "none"' | wc -l || true)
		[ "$led" -ge $((ranges + 1)) ] && return 0
		if [ $SECONDS -ge $deadline ]; then
			echo "cluster: $led of $((ranges + 1)) ranges have a leader after 120 s" >&2
			return 1
		fi
		sleep 0.5
	done
}

# cluster_stop: kills the nodes started by cluster_start, waits for them to
# exit and empties the caller's pids array.
cluster_stop() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	pids=()
}

# cluster_http NODE: the HTTP address of node NODE (1, 2, 3).
cluster_http() {
	echo "127.0.0.1:$((CLUSTER_PORT + 1000 + $1 - 1))"
}

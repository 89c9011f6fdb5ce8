#!/usr/bin/env bash
# The kill -9 test (internal/killtest): a 3-node cluster of raftrix
# processes takes writes while a seeded schedule kill -9s and restarts one
# node at a time, 50 times; then every acknowledged write must be present.
# Takes about 4 minutes. Extra arguments go to "go test".
#
#   scripts/kill_test.sh
#   RAFTRIX_KILL_SEED=123 RAFTRIX_KILL_COUNT=100 scripts/kill_test.sh
#
# RAFTRIX_KILL_SEED, RAFTRIX_KILL_COUNT (default 50), RAFTRIX_KILL_WRITERS
# (default 8), RAFTRIX_KILL_KEEP=1 (keep the run directory on success): see
# internal/killtest/doc.go. A failed run keeps its directory under $TMPDIR
# (data dirs, node logs, acked/missing keys) and prints its path and seed.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAFTRIX_KILL_TEST=1
exec go test -count=1 -v -timeout 15m -run '^TestKillNine$' ./internal/killtest "$@"

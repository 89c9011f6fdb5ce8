#!/usr/bin/env bash
# Creates the compose cluster's certificates in its certs volume, with the
# raftrix image's own "raftrix cert" (nothing else is needed):
#   ca.crt/ca.key, node.1-3.crt/.key for node1-3 (and localhost, 127.0.0.1,
#   so that the published ports work from this host), client.crt/.key "admin".
# Existing certificates are kept: the cert commands never replace a file.
#
# Usage: deploy/certs.sh [docker-compose options, e.g. -p PROJECT]
# COMPOSE overrides the compose command (default: docker-compose, or
# "docker compose" when only that exists).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ -z "${COMPOSE:-}" ]; then
	if command -v docker-compose >/dev/null; then COMPOSE=docker-compose; else COMPOSE="docker compose"; fi
fi
run() { $COMPOSE -f "$here/docker-compose.yml" "$@"; }
tool() { run "${opts[@]}" run --rm -T tool "$@"; }
opts=("$@")

have="$(tool cert list --certs-dir /certs)"
if grep -q '^ca.crt' <<<"$have"; then
	echo "the certs volume already has a CA; keeping it"
else
	tool cert create-ca --certs-dir /certs
fi
for id in 1 2 3; do
	if ! grep -q "^node.$id.crt" <<<"$have"; then
		tool cert create-node --certs-dir /certs --node-id "$id" --hosts "node$id,localhost,127.0.0.1"
	fi
done
if ! grep -q '^client.crt' <<<"$have"; then
	tool cert create-client --certs-dir /certs --name admin
fi
tool cert list --certs-dir /certs

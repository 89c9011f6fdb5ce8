#!/usr/bin/env bash
# The deploy test (make test-deploy): builds the raftrix image FROM scratch,
# starts the compose cluster with TLS and checks it through node loss and a
# network cut (deploy/deploytest). Prints SKIP and exits 0 where no Docker
# engine answers. Bounded: the test gives itself 4.5 minutes, go test 6.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! docker info >/dev/null 2>&1; then
	echo "SKIP: deploy test: no Docker engine answers ('docker info' failed)"
	exit 0
fi
if ! command -v docker-compose >/dev/null && ! docker compose version >/dev/null 2>&1; then
	echo "SKIP: deploy test: neither docker-compose nor the docker compose plugin is installed"
	exit 0
fi
RAFTRIX_DEPLOY_TEST=1 exec go test -count=1 -v -timeout 6m ./deploy/deploytest/

#!/usr/bin/env bash
# Builds the RaftrixDB image from scratch, pulling nothing:
#   deploy/build-image.sh [TAG]      (default raftrix:latest)
# The binary is compiled here with CGO_ENABLED=0 (static), then copied into
# an image FROM scratch. Needs Go and a Docker engine; no registry.
set -euo pipefail
tag="${1:-raftrix:latest}"
root="$(cd "$(dirname "$0")/.." && pwd)"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
mkdir "$ctx/empty"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$ctx/raftrix" ./cmd/raftrix)
# The classic builder: it needs no buildx plugin, and scratch plus COPY is
# all this image uses.
if ! DOCKER_BUILDKIT=0 docker build --quiet -f "$root/deploy/Dockerfile" -t "$tag" "$ctx" >"$ctx/build.log" 2>&1; then
	cat "$ctx/build.log" >&2
	exit 1
fi
echo "built $tag"

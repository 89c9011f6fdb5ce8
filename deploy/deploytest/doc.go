// Package deploytest tests deploy/: it builds the raftrix image FROM
// scratch, validates the compose file, creates certificates with
// deploy/certs.sh, starts the 3-node TLS cluster with docker compose, and
// writes and reads through the CLI while a node is stopped and while a
// node is cut off its network, then checks that every acknowledged write is
// on every node.
//
// It needs a Docker engine and docker-compose (or the compose plugin), and
// runs only with RAFTRIX_DEPLOY_TEST=1: deploy/test.sh (make test-deploy)
// sets it, and reports SKIP when `docker info` fails. Everything it creates
// (image, containers, network, volumes) carries a random name and is
// removed at the end, also when it fails.
package deploytest

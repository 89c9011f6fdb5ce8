# RaftrixDB. Targets a newcomer can guess: build, test, test-long, demo,
# proto, lint.

GO        ?= go
BIN       := $(CURDIR)/bin
# Pinned code generators. protoc itself comes from Debian's
# protobuf-compiler package (3.21.12 on bookworm); `make proto` checks it.
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
# Fast marshal/unmarshal/size methods (*_vtproto.pb.go) for the hot paths:
# Raft commands decoded at apply, stored records, gRPC messages (node/codec.go).
PROTOC_GEN_GO_VTPROTO_VERSION := v0.6.1-0.20240319094008-0393e58bdf10
PROTOC_VERSION             := 3.21.12

.PHONY: build test test-short test-race test-long demo proto proto-tools lint clean docker test-deploy test-kill test-nemesis bench bench-ranges

build:
	$(GO) build -o $(BIN)/raftrix ./cmd/raftrix

# The full suite, as CI runs it: unit, in-process cluster and CLI process tests.
test:
	$(GO) test -count=1 -timeout 20m ./...

# Quick inner-loop run: skips the tests that start real processes.
test-short:
	$(GO) test -count=1 -short ./...

test-race:
	$(GO) test -count=1 -race -timeout 30m ./...

# Longer soak runs; not part of CI.
test-long:
	$(GO) test -count=3 -race -timeout 60m ./...

# A local 3-node cluster with 64 ranges on 127.0.0.1:7001-7003, in a temp
# dir that is removed on Ctrl-C.
demo:
	$(GO) run ./cmd/raftrix demo --nodes 3 --ranges 64

# 100 seeded histories of 2,000 operations under partitions, kills, crashes
# that lose unsynced writes, delays and flaky links, checked with porcupine
# and the set and invariant checkers. Odd seeds run 3 nodes, even seeds 4
# (replica moves). Four histories at a time: each uses about a fifth of a
# core, so 100 take about 25 minutes on 2 cores. CI runs 3 seeds.
# Rerun one seed: go test -run 'TestNemesis/histories/seed=N$$' ./internal/nemesis/ -nemesis.seed=N -nemesis.histories=1
test-nemesis:
	$(GO) test -count=1 -timeout 3h -v -run TestNemesis ./internal/nemesis/ -nemesis.histories=100 -nemesis.ops=2500 -parallel 4

# 50 kill -9s of real nodes under write load; every acknowledged write must
# survive (about 3.5 minutes).
test-kill:
	scripts/kill_test.sh

# A FROM-scratch image with the static binary; pulls nothing.
docker:
	deploy/build-image.sh raftrix:latest

# The compose cluster: write, stop a node, cut one off, check every write.
# Prints SKIP where no Docker engine runs.
test-deploy:
	deploy/test.sh

# The benchmark suite against local RaftrixDB and (if built, see
# bench/ETCD.md) etcd clusters, side by side; about 7 minutes.
bench:
	./scripts/bench.sh $(BENCH_FLAGS)

# 10,000 ranges on 3 local processes: idle CPU and RSS per node, and the
# time to re-elect every range led by a node killed with -9.
bench-ranges:
	scripts/bench_ranges.sh 10000

proto-tools:
	@command -v protoc >/dev/null || { echo "protoc missing: apt-get install -y protobuf-compiler"; exit 1; }
	@protoc --version | grep -q "$(PROTOC_VERSION)" || echo "warning: protoc is $$(protoc --version), generated code was made with $(PROTOC_VERSION)"
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	GOBIN=$(BIN) $(GO) install github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto@$(PROTOC_GEN_GO_VTPROTO_VERSION)

proto: proto-tools
	PATH=$(BIN):$$PATH protoc -I proto \
		--go_out=. --go_opt=module=github.com/raftrix/raftrixdb \
		--go-grpc_out=. --go-grpc_opt=module=github.com/raftrix/raftrixdb \
		--go-vtproto_out=. --go-vtproto_opt=module=github.com/raftrix/raftrixdb,features=marshal+unmarshal+size \
		proto/raftrix/v1/*.proto

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf $(BIN)

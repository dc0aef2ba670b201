# Berth. `make run` serves the CRI with the embedded default config;
# `make test` runs everything CI runs. See README.md.

GO        ?= go
PREFIX    ?= /usr/local
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null | sed 's/^v//' | grep -E '^[0-9]+\.' || echo 0.1.0-dev)
REVISION  ?= $(shell git rev-parse --short HEAD 2>/dev/null)
TAGS      := seccomp
# The tests' builds add faultinject: berthd's fault points (internal/fault,
# docs/fault-points.md) are compiled in only there, never in bin/berthd.
TEST_TAGS := $(TAGS),faultinject
TEST_BIN  := $(BIN)/test
LDFLAGS   := -X github.com/berth-cri/berth/internal/version.Version=$(VERSION) \
             -X github.com/berth-cri/berth/internal/version.Revision=$(REVISION)
export CGO_ENABLED := 1

# Binaries: berthd, and the supervisor once it exists.
CMDS := $(notdir $(patsubst %/,%,$(dir $(wildcard cmd/*/main.go))))
# The supervisor is linked statically (libc and libseccomp included):
# libcontainer re-executes it as the init of every container and of every
# exec, and a dynamic binary pays the loader each time (mapping and
# relocating libc and libseccomp: ~100 of its ~400 page faults at start,
# ExecSync 8-12% faster here; docs/architecture.md). netgo and osusergo
# keep glibc's NSS, which needs shared libraries, out of it, as runc's
# static release does. berthd starts once and stays dynamic.
STATIC_TAGS    := netgo,osusergo
STATIC_LDFLAGS := -extldflags -static

.PHONY: all deps build test-bin run install test test-unit test-integration test-conformance tools critest vet fmt clean bench test-vm test-vm-full criu

all: build

deps:
	@hack/install-deps.sh

build: deps
	$(GO) build -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(filter-out berth-supervisor,$(CMDS)))
	$(GO) build -tags '$(TAGS),$(STATIC_TAGS)' -ldflags '$(LDFLAGS) $(STATIC_LDFLAGS)' -o $(BIN)/ ./cmd/berth-supervisor

# The binaries the integration and stress tests run: as build, plus the
# fault points.
test-bin: deps
	$(GO) build -tags '$(TEST_TAGS)' -ldflags '$(LDFLAGS)' -o $(TEST_BIN)/ $(addprefix ./cmd/,$(filter-out berth-supervisor,$(CMDS)))
	$(GO) build -tags '$(TEST_TAGS),$(STATIC_TAGS)' -ldflags '$(LDFLAGS) $(STATIC_LDFLAGS)' -o $(TEST_BIN)/ ./cmd/berth-supervisor

# The bench's in-process libcontainer floor (hack/bench.sh), built as the
# supervisor is, so that its inits start no dearer than the supervisor's.
FLOOR_BIN ?= $(BIN)/libcontainer-floor
.PHONY: bench-floor
bench-floor: deps
	$(GO) build -tags '$(TAGS),$(STATIC_TAGS)' -ldflags '$(STATIC_LDFLAGS)' -o $(FLOOR_BIN) ./test/bench/cmd/libcontainer-floor

# Serves in the foreground with the embedded defaults (or CONFIG=file).
run: build
	$(BIN)/berthd $(if $(CONFIG),--config $(CONFIG))

install: build
	install -D -m 0755 $(addprefix $(BIN)/,$(CMDS)) -t $(DESTDIR)$(PREFIX)/bin/
	install -d $(DESTDIR)/etc/berth/berth.d $(DESTDIR)/etc/berth/certs.d
	test -e $(DESTDIR)/etc/berth/berth.toml || $(BIN)/berthd config default > $(DESTDIR)/etc/berth/berth.toml
	install -D -m 0644 hack/systemd/berthd.service hack/systemd/berthd.socket -t $(DESTDIR)/etc/systemd/system/
	sed -i 's#/usr/local/bin#$(PREFIX)/bin#' $(DESTDIR)/etc/systemd/system/berthd.service $(DESTDIR)/etc/systemd/system/berthd.socket

vet:
	$(GO) vet -tags '$(TAGS)' ./...
	$(GO) vet -tags '$(TEST_TAGS)' ./internal/fault/

fmt:
	@out=$$(gofmt -l cmd internal api pkg test 2>/dev/null | grep -v '^test/conformance/harness/'); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Everything CI runs (.ci/run is exactly `make test`): this host's suites,
# the conformance suite judged against test/conformance/expected-failures.txt,
# then the real-node suite in the test VM.
test: build fmt vet test-unit test-integration test-stress-short test-conformance test-vm

# crictl, critest, ginkgo and crane, built from the Go module proxy.
tools:
	@test/conformance/harness/install-tools.sh >/dev/null

# CRIU 4.1+ for checkpoint/restore, rebuilt from Debian trixie's source on
# first use (about a minute) and cached in /var/tmp/berth-criu.
criu:
	@hack/install-criu.sh

# 1: a test that lacks a capability this host is meant to have (root,
# mounting, runc, CNI plugins, busybox, apparmor_parser, CRIU: what deps
# and criu install) fails instead of skipping (testsupport.Require). Tests
# for what the platform lacks (cgroup v2, systemd as PID 1, AppArmor in the
# kernel) still skip; make test-vm runs them. BERTH_REQUIRE_ALL=0 for a
# partial machine.
BERTH_REQUIRE_ALL ?= 1

# internal/fault's own tests run once without faultinject (the points do
# nothing and BERTH_FAULT is refused) and, with the rest, once with it.
test-unit: criu
	BERTH_REQUIRE_ALL=$(BERTH_REQUIRE_ALL) $(GO) test -tags '$(TEST_TAGS)' -count=1 $$($(GO) list ./... | grep -v /test/)
	$(GO) test -tags '$(TAGS)' -count=1 ./internal/fault/

test-integration: test-bin tools criu
	BERTH_REQUIRE_ALL=$(BERTH_REQUIRE_ALL) BERTHD_BIN=$(CURDIR)/$(TEST_BIN)/berthd $(GO) test -tags '$(TEST_TAGS)' -count=1 -timeout 20m ./test/...

clean:
	rm -rf $(BIN)

# critest against a fresh berthd, the offline test registry as mirror; fails
# on any failure not in test/conformance/expected-failures.txt.
critest: build
	test/conformance/run.sh $(CRITEST_ARGS)

test-conformance: build tools
	test/conformance/run.sh

# The real-node platform: inside a QEMU guest with systemd as PID 1, pure
# cgroup v2 and Debian 12's 6.1 kernel (test/vm/README.md). The guest image
# and kubelet are built on first use and cached in /var/tmp. test-vm is the
# CI part (platform tests, platform unit tests, focused critest, kubelet);
# test-vm-full runs every integration test and all of critest there.
test-vm: build tools criu
	test/vm/test-vm.sh ci

test-vm-full: build tools criu
	test/vm/test-vm.sh full

# berthd and containerd side by side through the CRI: bench/results.md and
# .json (BENCH_QUICK=1 for a short run). Figures are never asserted.
.PHONY: bench
bench: build
	hack/bench.sh

# Churn, load and crash tests: test/stress (pod churn with 20 in flight,
# concurrent pulls, ExecSync and List under churn) and the fault-point and
# corrupted-state tests of test/integration (docs/fault-points.md). Prints
# a summary with the resource counts; the full log is in bin/stress.log.
# test-stress-short is the CI-sized form (100 pod cycles, about 2 minutes).
.PHONY: test-stress test-stress-short
stress = rc=0; log=$(CURDIR)/$(BIN)/stress.log; \
	BERTH_STRESS=1 BERTH_CHURN=$(1) BERTHD_BIN=$(CURDIR)/$(TEST_BIN)/berthd $(GO) test -tags '$(TEST_TAGS)' -count=1 -v -timeout 60m ./test/stress/ >$$log 2>&1 || rc=1; \
	BERTHD_BIN=$(CURDIR)/$(TEST_BIN)/berthd $(GO) test -tags '$(TEST_TAGS)' -count=1 -v -timeout 20m -run '^(TestFault|TestCorrupt)' ./test/integration/ >>$$log 2>&1 || rc=1; \
	echo "== stress summary (log: $$log)"; grep -E '^(churn|pulls|load):|^(--- |ok|FAIL)' $$log; \
	if [ $$rc != 0 ]; then echo "stress tests FAILED"; exit 1; fi

test-stress: test-bin
	@$(call stress,1000)

test-stress-short: test-bin
	@$(call stress,$(or $(BERTH_CHURN),100))

#!/bin/bash
# make test-vm / make test-vm-full: run, inside the real-node guest (systemd
# as PID 1, pure cgroup v2, Debian 12's 6.1 kernel), what depends on that
# platform. Everything is built here on the host, staged in bin/vm/, and the
# guest boots once for the whole suite (test/vm/guest-suite.sh).
#
#   test/vm/test-vm.sh          # the CI suite
#   test/vm/test-vm.sh full     # the whole integration suite and all of critest (not in CI)
#
# Env: VMDIR (image cache, /var/tmp/berth-vm), VM_MEM, VM_CPUS, VM_TIMEOUT,
# VM_STEPS (space-separated step names to run, default all; see guest-suite.sh).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
mode=${1:-ci}
stage=$top/bin/vm
t0=$SECONDS
say() { echo "test-vm: $* ($((SECONDS - t0))s)"; }

test/vm/make-image.sh
say "guest image ready"
steps=" ${VM_STEPS:-kubelet} "
kubelet=
if [[ $steps == *" kubelet "* ]]; then
	kubelet=$(test/vm/build-kubelet.sh)
	say "kubelet ready"
fi
test/conformance/harness/install-tools.sh >/dev/null
# The critest images: built and published on the host's test registry, whose
# layer tarballs the guest republishes into a registry of its own.
test/conformance/harness/test-registry.sh start >/dev/null

rm -rf "$stage"
mkdir -p "$stage/registry-build"
export CGO_ENABLED=1
# What the node runs (critest, kubelet), and for the integration tests the
# same with the fault points: the Makefile's own builds (the supervisor
# linked statically), into the stage.
make -s build test-bin BIN="$stage" >/dev/null
CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$stage/pause" ./test/internal/harness/testdata/pause
# Test binaries of the packages whose behaviour depends on the platform.
for pkg in internal/stats internal/snapshot internal/supervisor internal/oci internal/userns internal/server/runtimeinfo internal/server/stats test/integration test/kubelet $(
	ls -d internal/cgroup* 2>/dev/null || true); do
	name=$(basename "$pkg")
	[[ $pkg == internal/server/* ]] && name=server$name
	go test -c -tags seccomp,faultinject -o "$stage/$name.test" "./$pkg"
done
[[ -z $kubelet ]] || cp "$kubelet" "$stage/kubelet"
for t in crictl critest crane ginkgo; do cp "$(command -v $t)" "$stage/"; done
# CRIU 4.1 (make criu), which the guest installs where the tests expect it.
cp /usr/local/sbin/criu "$stage/criu"
cp /var/lib/cri-harness/registry/build/*.tar "$stage/registry-build/"
say "binaries staged in bin/vm ($(du -sh "$stage" | cut -f1))"

rc=0
# The guest gets only what its command line says: pass the suite's knobs on.
pass=()
for v in VM_STEPS VM_IT_RUN VM_CRITEST_FOCUS VM_CRITEST_SKIP BERTH_TEST_SLOW CRITEST_BERTHD_LOG_LEVEL; do
	[[ -n ${!v:-} ]] && pass+=("$v=${!v}")
done
VM_MEM=${VM_MEM:-6144} VM_TIMEOUT=${VM_TIMEOUT:-3600} test/vm/run.sh env "${pass[@]}" test/vm/guest-suite.sh "$mode" || rc=$?
say "guest suite finished, exit $rc"
# The suite's own closing line, last: "vm: N passed, M failed".
cat "$stage/logs/summary.txt" 2>/dev/null || echo "vm: 0 passed, 1 failed"
exit $rc

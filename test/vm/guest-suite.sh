#!/bin/bash
# Runs inside the test guest (test/vm/run.sh), from the checkout shared at
# /mnt/host, with everything prebuilt by test/vm/test-vm.sh in bin/vm/.
# Each step prints one "step NAME: ok|FAILED (Ns)" line and, on failure,
# the tail of its log (all logs: bin/vm/logs/ on the host). The last line
# is "vm: N passed, M failed".
#
#   guest-suite.sh [ci|full]
# VM_STEPS limits the run to the named steps.
set -uo pipefail
mode=${1:-ci}
top=$PWD
opt=/opt/berth
logs=$top/bin/vm/logs
mkdir -p "$logs" "$opt"
# Binaries run from the guest's own disk: exec from 9p is ~5x slower.
cp -a bin/vm/. "$opt/"
rm -rf "$opt/logs"
export PATH=$opt:$PATH
install -m 0755 "$opt/criu" /usr/local/sbin/criu
export BERTHD_BIN=$opt/berthd BERTH_KUBELET=$opt/kubelet BERTH_TEST_LOGS=$logs BERTH_TEST_PAUSE=$opt/pause BERTH_TEST_SUPERVISOR=$opt/berth-supervisor
# Emulated guest: the harness's per-call CRI timeouts and polls are scaled.
export BERTH_TEST_SLOW=${BERTH_TEST_SLOW:-20}
passed=0 failed=0 failures=()
start_all=$SECONDS

# step NAME CMD...: run CMD (in a subshell) with its output in logs/NAME.log.
step() {
	local name=$1
	shift
	if [[ -n ${VM_STEPS:-} && " $VM_STEPS " != *" $name "* ]]; then
		return
	fi
	local t=$SECONDS rc=0
	("$@") >"$logs/$name.log" 2>&1 || rc=$?
	if ((rc == 0)); then
		passed=$((passed + 1))
		echo "step $name: ok ($((SECONDS - t))s)"
	else
		failed=$((failed + 1))
		failures+=("$name")
		echo "step $name: FAILED, exit $rc ($((SECONDS - t))s); log tail:"
		grep -E '^(--- FAIL|FAIL|panic|conformance: UNEXPECTED)' "$logs/$name.log" | head -40 | sed 's/^/    /'
		tail -n 25 "$logs/$name.log" | sed 's/^/    | /'
	fi
}

# gotest PKGDIR BINARY ARGS...: a prebuilt test binary in its package dir.
gotest() {
	local dir=$1 bin=$2
	shift 2
	cd "$top/$dir" && "$opt/$bin" -test.v -test.count=1 "$@"
}

platform() {
	echo "kernel $(uname -r); PID 1 $(cat /proc/1/comm); $(systemctl --version | head -1)"
	echo "cgroup fs: $(stat -fc %T /sys/fs/cgroup); controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
	[[ $(cat /proc/1/comm) == systemd && $(stat -fc %T /sys/fs/cgroup) == cgroup2fs ]]
}
echo "guest: $(uname -r), $(nproc) vCPUs, $(free -m | awk '/Mem:/{print $2}') MiB"
step platform platform

# Unit tests of the packages whose behaviour depends on the platform.
step unit-stats gotest internal/stats stats.test -test.timeout 10m
step unit-snapshot gotest internal/snapshot snapshot.test -test.timeout 20m
step unit-oci gotest internal/oci oci.test -test.timeout 10m
step unit-userns gotest internal/userns userns.test -test.timeout 10m
step unit-runtimeinfo gotest internal/server/runtimeinfo serverruntimeinfo.test -test.timeout 10m
step unit-serverstats gotest internal/server/stats serverstats.test -test.timeout 10m
step unit-supervisor gotest internal/supervisor supervisor.test -test.timeout 30m
for b in "$opt"/cgroup*.test; do
	[[ -e $b ]] || continue
	n=$(basename "$b" .test)
	step "unit-$n" gotest "internal/$n" "$n.test" -test.timeout 10m
done

# berthd end to end on this platform.
# The integration tests' berthd has the fault points (bin/vm/test/).
if [[ $mode == full ]]; then
	BERTHD_BIN=$opt/test/berthd step integration gotest test/integration integration.test -test.timeout 120m
else
	BERTHD_BIN=$opt/test/berthd step integration gotest test/integration integration.test -test.timeout 40m \
		-test.run "${VM_IT_RUN:-^(TestSystemd|TestCgroupV2|TestKernel|TestVersionAndStatus|TestAppArmor|TestOCIRuntimeHandler|TestSupervisorCrashLosesNothing|TestCheckpointContainer$)}"
	# TestCgroupV2 runs its daemons with cgroupfs unless told otherwise:
	# once more with the systemd driver.
	step integration-cgroupv2-systemd env BERTH_TEST_CGROUP_DRIVER=systemd BERTHD_BIN=$opt/test/berthd \
		bash -c "cd test/integration && $opt/integration.test -test.v -test.count=1 -test.timeout 20m -test.run '^TestCgroupV2'"
fi

critest_run() {
	export CRI_TOOLS_PREBUILT=1 CRI_REGISTRY_LAYERS=$opt/registry-build CRITEST_REPORT_DIR=$logs/critest
	export BERTHD=$opt/berthd CRITEST_TIMEOUT=100m CRITEST_START_TIMEOUT=300 WORK=/var/lib/berth-conformance
	test/conformance/harness/test-registry.sh start
	if [[ $mode == full ]]; then
		test/conformance/run.sh
	else
		# The platform-dependent part: pods, containers (OOM kills of
		# systemd scopes included), security context, AppArmor (the
		# guest's kernel has it, this host's has not), resources and stats.
		test/conformance/run.sh --ginkgo.focus="${VM_CRITEST_FOCUS:-PodSandbox|Container|Security Context|AppArmor|[Rr]esource|[Ss]tats}" \
			--ginkgo.skip="${VM_CRITEST_SKIP:-Streaming|Networking|Image Manager|[Bb]enchmark}"
	fi
}
step critest critest_run
grep -h '^conformance: [0-9]' "$logs/critest.log" 2>/dev/null | sed 's/^/    /'

step kubelet gotest test/kubelet kubelet.test -test.timeout 30m

echo "guest suite: $((SECONDS - start_all))s${failures[*]:+; failed: ${failures[*]}}"
echo "vm: $passed passed, $failed failed" | tee "$logs/summary.txt"
((failed == 0))

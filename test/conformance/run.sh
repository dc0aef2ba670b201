#!/usr/bin/env bash
# Run the critest validation suite against a freshly started berthd, with
# the offline test registry (harness/) as the mirror of every public
# registry critest names, and fail on any failure not listed in
# expected-failures.txt.
#
#   test/conformance/run.sh [critest args...]    e.g. --ginkgo.focus='Image Manager'
#
# Environment:
#   BERTHD        berthd binary (default bin/berthd; berth-supervisor beside it)
#   WORK          berthd's private dirs and config (default /tmp/berth-conformance)
#   CRITEST_REPORT_DIR  reports (default critest-report/ at the top of the repo)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
harness=$here/harness
berthd=${BERTHD:-$top/bin/berthd}
work=${WORK:-/tmp/berth-conformance}
registry=127.0.0.1:5000
export CRITEST_REPORT_DIR=${CRITEST_REPORT_DIR:-$top/critest-report}

# CRI_TOOLS_PREBUILT=1: crictl, critest and crane are on PATH already (the
# test VM, which has no Go toolchain).
[[ -n ${CRI_TOOLS_PREBUILT:-} ]] || "$harness/install-tools.sh" >/dev/null
"$harness/test-registry.sh" start >/dev/null

# A fresh berthd every run: state from an earlier run must not help or hurt.
if [[ -d $work ]]; then
	grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	pkill -f "berth-supervisor --state-dir $work/" 2>/dev/null || true
	rm -rf "$work"
fi
mkdir -p "$work/certs.d" "$work/net.d"
# Mirrors with no fallback: `server` itself is the mirror, so the real
# registries are never contacted (not even resolved).
for host in registry.k8s.io k8s.gcr.io gcr.io public.ecr.aws docker.io quay.io; do
	mkdir -p "$work/certs.d/$host"
	cat >"$work/certs.d/$host/hosts.toml" <<TOML
server = "http://$registry"
[host."http://$registry"]
  capabilities = ["pull", "resolve"]
TOML
done
# The sample bridge network, on its own bridge, subnet and IPAM dir.
sed -e 's/"berth0"/"berthct0"/; s#10\.85\.#10.86.#g' -e "s#/var/lib/berth/cni/networks#$work/ipam#" \
	"$top/hack/cni/10-berth-bridge.conflist" >"$work/net.d/10-berth-conformance.conflist"

cat >"$work/berth.toml" <<TOML
listen = "$work/run/berth.sock"
root_dir = "$work/root"
state_dir = "$work/run"
sandbox_image = "registry.k8s.io/pause:3.10"
log_level = "${CRITEST_BERTHD_LOG_LEVEL:-info}"
[registry]
config_path = "$work/certs.d"
[cni]
conf_dir = "$work/net.d"
# NRI on its own socket and plugin dirs: critest's NRI cases connect their
# plugins there (--nri-socket below). Its synchronization cases hold a
# plugin's Synchronize for 2s while containers are created, to check none
# is lost: the request timeout must outlast that hold (the default, 2s,
# drops the plugin first and the cases skip).
[nri]
socket_path = "$work/nri/nri.sock"
plugin_path = "$work/nri/plugins"
plugin_config_path = "$work/nri/conf.d"
plugin_request_timeout = "5s"
TOML

"$berthd" --config "$work/berth.toml" >"$work/berthd.log" 2>&1 &
pid=$!
cleanup() {
	kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	# The supervisor's log lives in the state dir, unmounted below.
	cp "$work/run/supervisor/supervisor.log" "$work/berthd.log" "$CRITEST_REPORT_DIR/" 2>/dev/null || true
	pkill -f "berth-supervisor --state-dir $work/" 2>/dev/null || true
	ip link del berthct0 2>/dev/null || true
	# berthd's state dir (a tmpfs it mounted when /run is on disk) and
	# whatever else is mounted under the work dir.
	grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}
trap cleanup EXIT
# Ready, not just listening: until start-up recovery is done berthd answers
# most calls Unavailable (a slow machine, such as the emulated test VM,
# takes seconds there). CRITEST_START_TIMEOUT in seconds.
ready=0
for _ in $(seq $((${CRITEST_START_TIMEOUT:-60} * 10))); do
	kill -0 "$pid" 2>/dev/null || {
		cat "$work/berthd.log" >&2
		exit 1
	}
	if [[ -S $work/run/berth.sock ]] &&
		crictl --runtime-endpoint "unix://$work/run/berth.sock" info 2>/dev/null |
		grep -B1 '"type": "RuntimeReady"' | grep -q '"status": true'; then
		ready=1
		break
	fi
	sleep 0.1
done
((ready)) || {
	echo "conformance: berthd not ready after ${CRITEST_START_TIMEOUT:-60}s" >&2
	tail -n 50 "$work/berthd.log" >&2
	exit 1
}

rc=0
"$harness/run-critest.sh" "unix://$work/run/berth.sock" --nri-socket="$work/nri/nri.sock" "$@" || rc=$?

# Judge by the JUnit report: every failed case must be an expected one.
junit=$CRITEST_REPORT_DIR/junit.xml
[[ -s $junit ]] || {
	echo "conformance: no JUnit report" >&2
	exit 1
}
mapfile -t expected < <(grep -v '^\s*#' "$here/expected-failures.txt" | sed -n 's/^\(.*[^ ]\) *|.*/\1/p')
unexpected=0
while IFS= read -r name; do
	ok=0
	for e in "${expected[@]}"; do
		[[ $name == *"$e"* ]] && ok=1
	done
	if ((ok)); then
		echo "conformance: expected failure: $name"
	else
		echo "conformance: UNEXPECTED FAILURE: $name"
		unexpected=$((unexpected + 1))
	fi
done < <(grep -o '<testcase name="[^"]*" classname="[^"]*" status="failed"' "$junit" | sed 's/<testcase name="\([^"]*\)".*/\1/')
status() { { grep -o "<testcase name=\"\[It\][^\"]*\" [^>]*status=\"$1\"" "$junit" || true; } | wc -l; }
passed=$(status passed)
skipped=$(status skipped)
failed=$(grep -c '<testcase name="[^"]*" classname="[^"]*" status="failed"' "$junit" || true)
if ((unexpected)); then
	echo "conformance: $unexpected unexpected failures (berthd log: $work/berthd.log)"
	echo "conformance: $passed passed, $unexpected failed, $skipped skipped"
	exit 1
fi
# The closing line counts only failures that count: the expected ones are
# said on the line before.
echo "conformance: $((failed - unexpected)) expected failure(s), listed in test/conformance/expected-failures.txt (critest exit $rc)"
echo "conformance: $passed passed, 0 failed, $skipped skipped"

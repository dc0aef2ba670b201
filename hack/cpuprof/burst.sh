#!/usr/bin/env bash
# hack/cpuprof/burst.sh: make bench's node-burst workload against berth
# alone (no peers started), for measuring where a pod start's CPU goes
# (docs/architecture.md, "Where a pod start's CPU goes"). Root.
#
#   hack/cpuprof/burst.sh [OUT_DIR]
#
# Environment:
#   BERTHD           berthd binary (default bin/berthd; the supervisor beside it)
#   CPUPROF_ARGS     berth-bench run flags (default: -quick -burst-pods 50
#                    -burst-in-flight 10, issue 22's load)
#   CPUPROF_PERF=1   perf record -g berthd and the supervisor during the burst
#                    (OUT_DIR/berthd.perf.data, supervisor.perf.data)
# It uses its own work dir, bridge and subnet, so it can run beside make bench.
set -euo pipefail

BENCH_TOP=$(cd "$(dirname "$0")/../.." && pwd)
BENCH_WORK=${CPUPROF_WORK:-/tmp/berth-cpuprof}
BENCH_REGISTRY=127.0.0.1:5000
harness=${HARNESS:-$BENCH_TOP/../shared/cri-harness}
out=${1:-/tmp/cpuprof-out}
export BENCH_TOP BENCH_WORK BENCH_REGISTRY
[[ -z ${BERTHD:-} ]] || export BERTHD
# shellcheck source=/dev/null
source "$BENCH_TOP/test/bench/runtimes/common.sh"
# shellcheck source=/dev/null
source "$BENCH_TOP/test/bench/runtimes/berth.sh"
BERTH_NETWORK=berth-cpuprof BERTH_BRIDGE=bcpuprof0 BERTH_SUBNET=10.241.0.0/16

cleanup() {
	local rc=$? m
	trap - EXIT INT TERM
	[[ -z ${perf_pids:-} ]] || kill -INT $perf_pids 2>/dev/null || true
	[[ -z ${perf_pids:-} ]] || wait $perf_pids 2>/dev/null || true
	berth_stop || true
	cp "$BERTH_DIR/berthd.log" "$out/" 2>/dev/null || true
	for m in $(awk -v w="$BENCH_WORK/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
		umount -l "$m" 2>/dev/null || true
	done
	rm -rf "$BENCH_WORK"
	exit "$rc"
}
mkdir -p "$out"
"$harness/test-registry.sh" start >/dev/null
rm -rf "$BENCH_WORK"
mkdir -p "$BENCH_WORK"
trap cleanup EXIT
trap 'exit 130' INT TERM
CGO_ENABLED=0 go build -C "$BENCH_TOP" -o "$BENCH_WORK/berth-bench" ./test/bench/cmd/berth-bench
berth_start
echo "[$(berth_target)]" >"$BENCH_WORK/targets.json"
args=(-targets "$BENCH_WORK/targets.json" -out "$out/results.json" -only '^node-burst$')
read -ra extra <<<"${CPUPROF_ARGS:--quick -burst-pods 50 -burst-in-flight 10}"
args+=("${extra[@]}")
perf_pids=
if [[ ${CPUPROF_PERF:-0} == 1 ]]; then
	sup=$(pids_matching berth-supervisor "--state-dir $BERTH_DIR/run" | while read -r p; do
		[[ $(cat "/proc/$p/comm") == berth-keeper ]] || echo "$p"
	done | head -1)
	perf record -F 499 -g -o "$out/berthd.perf.data" -p "$BERTH_PID" >/dev/null 2>&1 &
	perf_pids+=" $!"
	perf record -F 499 -g -o "$out/supervisor.perf.data" -p "$sup" >/dev/null 2>&1 &
	perf_pids+=" $!"
fi
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BENCH_WORK/berth-bench" run "${args[@]}"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ -n $perf_pids ]]; then
	kill -INT $perf_pids
	wait $perf_pids 2>/dev/null || true
	perf_pids=
fi

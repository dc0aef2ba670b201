#!/usr/bin/env bash
# make bench: berthd, containerd 2.3 (built with go install on first use)
# and Debian's containerd 1.6 side by side through the CRI, offline, on
# private sockets and directories, with the test registry as mirror; plus
# any runtime started by hand named in BENCH_PEERS.
# Writes bench/results.md and bench/results.json (never asserted; not part
# of make test); daemon logs and critest reports go to bench/results/
# (ignored by git).
#
#   hack/bench.sh
#
# Environment:
#   BENCH_QUICK=1          fewer samples and pods, no critest: for iterating (a few minutes)
#   BENCH_ROUNDS=N         alternation rounds (light workloads and cold pulls)
#   BENCH_CRITEST=0|1      run critest -benchmark against berth and containerd 2.3 (default 1, 0 when quick)
#   BENCH_CRITEST_ALL=1    and against containerd 1.6 too (a few minutes more)
#   BENCH_CRITEST_TIMEOUT  per runtime, seconds (default 420)
#   BENCH_ONLY=REGEXP      run only the matching workloads (pull-cold, pull-large, pod-start,
#                          node-burst, memory...);
#                          container-floor runs with container-lifecycle, whose floor it is
#   BENCH_FLOOR_PERIOD     container-floor's pace: a duration between creates (30ms, 0 for back
#                          to back) or auto, the default: berth's container-lifecycle cycle
#   BENCH_OUT              where results.md/.json and results/ go (default bench/)
#   BENCH_WORK             private dirs (default /tmp/berth-bench; emptied at start and end)
#   HARNESS                the cri-harness (default test/conformance/harness, the repo's own)
#   BERTHD                 berthd binary (default bin/berthd)
#   BENCH_PEERS            runtimes started by hand, as more columns:
#                          "NAME=ENDPOINT[,root=DIR][,helpers=STRING] ..." (test/bench/runtimes/peers.sh)
#   BENCH_PEERS_CACHE      where containerd 2.3 and runc 1.3 are built and kept
#                          (default /var/tmp/berth-bench-peers, a directory per version)
#   BENCH_CONTAINERD2_VERSION, BENCH_RUNC13_VERSION   their versions (v2.3.7, v1.3.7)
set -euo pipefail

BENCH_TOP=$(cd "$(dirname "$0")/.." && pwd)
BENCH_WORK=${BENCH_WORK:-/tmp/berth-bench}
BENCH_REGISTRY=127.0.0.1:5000
harness=${HARNESS:-$BENCH_TOP/test/conformance/harness}
out=${BENCH_OUT:-$BENCH_TOP/bench}
quick=${BENCH_QUICK:-0}
[[ $quick == 1 ]] && critest_default=0 || critest_default=1
run_critest=${BENCH_CRITEST:-$critest_default}
critest_timeout=${BENCH_CRITEST_TIMEOUT:-420}
export BENCH_TOP BENCH_WORK BENCH_REGISTRY
# runtimes/restart.sh (node-burst's restart) sources the runtime scripts again.
[[ -z ${BERTHD:-} ]] || export BERTHD

# shellcheck source=/dev/null
source "$BENCH_TOP/test/bench/runtimes/common.sh"
# shellcheck source=/dev/null
source "$BENCH_TOP/test/bench/runtimes/berth.sh"
# shellcheck source=/dev/null
source "$BENCH_TOP/test/bench/runtimes/containerd.sh"
# shellcheck source=/dev/null
source "$BENCH_TOP/test/bench/runtimes/containerd2.sh"
# shellcheck source=/dev/null
source "$BENCH_TOP/test/bench/runtimes/peers.sh"

[[ $(id -u) == 0 ]] || {
	echo "bench: run as root (containers, CNI, iptables)" >&2
	exit 1
}
case $BENCH_WORK in /tmp/?* | /var/tmp/?*) ;; *)
	echo "bench: BENCH_WORK must be under /tmp or /var/tmp (it is emptied)" >&2
	exit 1
	;;
esac

# cleanup stops the daemons it started (removing their pods first, so that CNI tears
# down addresses and iptables rules), unmounts what they left under the
# work dir, keeps the daemon logs, and empties the work dir. It runs on
# every exit, failures included; the registry is left running.
cleanup() {
	local rc=$? m
	trap - EXIT INT TERM
	berth_stop || true
	containerd2_stop || true
	containerd_stop || true
	mkdir -p "$out/results"
	cp "$BERTH_DIR/berthd.log" "$out/results/" 2>/dev/null || true
	cp "$CTRD_DIR/containerd.log" "$out/results/containerd-1.6.log" 2>/dev/null || true
	cp "$CTRD2_DIR/containerd.log" "$out/results/containerd-2.3.log" 2>/dev/null || true
	cp "$BENCH_WORK"/*.start.log "$out/results/" 2>/dev/null || true
	# Deepest first; a runtime killed mid-pod may leave rootfs or netns mounts.
	for m in $(awk -v w="$BENCH_WORK/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
		umount -l "$m" 2>/dev/null || true
	done
	# container-floor's cgroups, if berth-bench was killed mid-floor.
	[[ ! -x $BENCH_WORK/libcontainer-floor ]] || "$BENCH_WORK/libcontainer-floor" -cleanup || true
	rm -rf "$BENCH_WORK"
	echo "bench: cleaned up (logs in $out/results/)"
	exit "$rc"
}

start=$SECONDS
step() { echo "bench: [$((SECONDS - start))s] $*"; }

step "dependencies"
# A failed install or build is not fatal: that column is reported unavailable.
ctrd16_installed=1 ctrd2_built=1
containerd_install || ctrd16_installed=0
containerd2_install || ctrd2_built=0
"$harness/install-tools.sh" >/dev/null
"$BENCH_TOP/hack/install-criu.sh" # the checkpoint workload
"$harness/test-registry.sh" start >/dev/null

# A previous run killed hard may have left its daemons or dirs: the same
# cleanup, by the pids and names of this benchmark only.
for pid in $(pids_matching containerd --config "$CTRD_DIR/config.toml") $(pids_matching containerd --config "$CTRD2_DIR/config.toml") \
	$(pids_matching berthd --config "$BERTH_DIR/berth.toml"); do
	stop_pid "leftover daemon" "$pid"
done
BERTH_PID= CTRD_PID= CTRD2_PID=
trap cleanup EXIT
trap 'exit 130' INT TERM
berth_stop
containerd2_stop
containerd_stop
awk -v w="$BENCH_WORK/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r | xargs -r umount -l
rm -rf "$BENCH_WORK"
mkdir -p "$BENCH_WORK" "$out/results"

step "building the benchmark and its image"
CGO_ENABLED=0 go build -C "$BENCH_TOP" -o "$BENCH_WORK/berth-bench" ./test/bench/cmd/berth-bench
# libcontainer in-process, built as berth's supervisor is (the Makefile's
# bench-floor: cgo, libseccomp, linked statically).
make -s -C "$BENCH_TOP" bench-floor FLOOR_BIN="$BENCH_WORK/libcontainer-floor"
# The pull images: 5 x 40 MiB, 1 GiB in one layer, 100 layers (built
# once from fixed seeds, cached in /var/cache/berth-bench).
"$BENCH_WORK/berth-bench" image -ref "$BENCH_REGISTRY/berth-bench/multilayer:5x40" \
	-large "$BENCH_REGISTRY/berth-bench/large:1x1024" -layers "$BENCH_REGISTRY/berth-bench/layers:100x1"

# start_peer NAME START TARGET: start a peer (in this shell: its pid
# variable is set here) and add its targets.json entry; one that does not
# start gets an unavailable entry (the report says why), never no column.
start_peer() {
	local name=$1 log=$BENCH_WORK/$1.start.log
	if "$2" >"$log" 2>&1; then
		targets+=("$("$3")")
	else
		echo "bench: $name did not start (its column says so); $log:" >&2
		tail -5 "$log" >&2
		targets+=("$(unavailable_target "$name" "did not start: $(tail -3 "$log")")")
	fi
}

step "starting the runtimes"
berth_start
targets=("$(berth_target)")
if ((ctrd2_built)); then
	start_peer "$CTRD2_NAME" containerd2_start containerd2_target
else
	targets+=("$(unavailable_target "$CTRD2_NAME" "go install of containerd $CTRD2_VERSION or runc $RUNC13_VERSION failed: $(tail -3 "$BENCH_PEERS_CACHE"/*.log 2>/dev/null | tail -3)")")
fi
if ((ctrd16_installed)); then
	start_peer "$CTRD_NAME" containerd_start containerd_target
else
	targets+=("$(unavailable_target "$CTRD_NAME" "apt-get install containerd failed")")
fi
while read -r t; do
	[[ -n $t ]] && targets+=("$t")
done < <(peers_targets)
(
	IFS=,
	echo "[${targets[*]}]"
) >"$BENCH_WORK/targets.json"

step "workloads"
args=(-targets "$BENCH_WORK/targets.json" -out "$out/results.json"
	-floor "$BENCH_WORK/libcontainer-floor" -floor-dir "$BENCH_WORK/floor")
[[ -n ${BENCH_FLOOR_PERIOD:-} ]] && args+=(-floor-period "$BENCH_FLOOR_PERIOD")
[[ $quick == 1 ]] && args+=(-quick)
[[ -n ${BENCH_ROUNDS:-} ]] && args+=(-rounds "$BENCH_ROUNDS" -cold-pulls "$BENCH_ROUNDS")
[[ -n ${BENCH_ONLY:-} ]] && args+=(-only "$BENCH_ONLY")
"$BENCH_WORK/berth-bench" run "${args[@]}"

report=(-results "$out/results.json")
if [[ $run_critest == 1 ]]; then
	# The runtimes this script started and that answer (peers of
	# BENCH_PEERS are not ours to run critest against).
	# containerd 1.6 only with BENCH_CRITEST_ALL=1: three critest runs
	# would take make bench past its 20 minutes.
	critest_targets=("berth=$BERTH_SOCK")
	[[ -n $CTRD2_PID ]] && kill -0 "$(daemon_pid "$CTRD2_DIR" "$CTRD2_PID")" 2>/dev/null && critest_targets+=("$CTRD2_NAME=$CTRD2_SOCK")
	[[ ${BENCH_CRITEST_ALL:-0} == 1 && -n $CTRD_PID ]] && kill -0 "$(daemon_pid "$CTRD_DIR" "$CTRD_PID")" 2>/dev/null && critest_targets+=("$CTRD_NAME=$CTRD_SOCK")
	for ct in "${critest_targets[@]}"; do
		rt=${ct%%=*} sock=${ct#*=}
		dir=$out/results/critest-$rt
		step "critest -benchmark against $rt"
		rm -rf "$dir"
		mkdir -p "$dir"
		t0=$SECONDS rc=0
		CRITEST_REPORT_DIR=$dir timeout "$critest_timeout" \
			"$harness/run-critest.sh" "unix://$sock" -benchmark >"$dir/run.log" 2>&1 || rc=$?
		if ((rc == 124)); then
			echo "timed out after ${critest_timeout}s" >"$dir/status"
		else
			echo "exit status $rc in $((SECONDS - t0))s" >"$dir/status"
		fi
		# A failed or killed benchmark may leave pods; the next one needs a clean node.
		remove_all_pods "unix://$sock"
		report+=(-critest "$rt=$dir")
	done
fi
"$BENCH_WORK/berth-bench" report "${report[@]}"
step "done: $out/results.md"

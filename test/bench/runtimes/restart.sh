#!/usr/bin/env bash
# restart.sh NAME: restart one runtime of a running hack/bench.sh with its
# pods left running, for berth-bench's node-burst workload (the restart
# command of targets.json): SIGTERM to the daemon, and once it is gone,
# the same daemon on the same config again, without waiting for it. Prints
# {"pid": NEW_PID, "launched_ns": UNIX_NS}. The environment is the one
# hack/bench.sh exports (BENCH_TOP, BENCH_WORK, BENCH_REGISTRY, BERTHD).
set -euo pipefail
name=$1
dir=$BENCH_TOP/test/bench/runtimes
# shellcheck source=/dev/null
source "$dir/common.sh"
case $name in
berth | containerd | containerd2) ;;
*)
	echo "restart.sh: unknown runtime $name" >&2
	exit 2
	;;
esac
# shellcheck source=/dev/null
source "$dir/$name.sh"
"${name}_restart"

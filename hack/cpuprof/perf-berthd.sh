#!/bin/sh
# hack/cpuprof/perf-berthd.sh: berthd under perf record, inherited by every
# process it starts (CNI plugins and their iptables, the keeper, the
# supervisor, the container inits), so that `perf report --sort comm`
# splits a workload's CPU by program. BERTHD=hack/cpuprof/perf-berthd.sh
# hack/cpuprof/burst.sh; CPUPROF_PERF_OUT names the data file.
berthd="$(dirname "$0")/../../bin/berthd"
# berth.sh asks the binary its version too: that call must not overwrite
# the daemon's data file.
case " $* " in *" --version "*) exec "$berthd" "$@" ;; esac
exec perf record -F 997 -g -o "${CPUPROF_PERF_OUT:-/tmp/cpuprof.perf.data}" -- "$berthd" "$@"

#!/bin/sh
# hack/cpuprof/perf-berthd.sh: berthd under perf record, inherited by every
# process it starts (CNI plugins and their iptables, the keeper, the
# supervisor, the container inits), so that `perf report --sort comm`
# splits a workload's CPU by program. BERTHD=hack/cpuprof/perf-berthd.sh
# hack/cpuprof/burst.sh; CPUPROF_PERF_OUT names the data file.
exec perf record -F 997 -g -o "${CPUPROF_PERF_OUT:-/tmp/cpuprof.perf.data}" -- "$(dirname "$0")/../../bin/berthd" "$@"

#!/bin/sh
# hack/cpuprof/strace-berthd.sh: berthd under strace -f, recording every
# execve of it and of everything it starts (CNI plugins and their iptables,
# the supervisor, the container inits, the execs), to count the execs per
# pod start and per ExecSync. Slow (ptrace): for counts, never for times.
# BERTHD=hack/cpuprof/strace-berthd.sh hack/cpuprof/burst.sh; then
#   grep -a 'execve(' $CPUPROF_EXEC_TRACE | grep -av '= -1' |
#     sed -E 's/.*execve\("([^"]*)".*/\1/' | awk -F/ '{print $NF}' | sort | uniq -c
exec strace -f -qq -e trace=execve -e signal=none -o "${CPUPROF_EXEC_TRACE:-/tmp/cpuprof-exec.trace}" -- "$(dirname "$0")/../../bin/berthd" "$@"

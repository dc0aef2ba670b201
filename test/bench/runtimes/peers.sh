# BENCH_PEERS for hack/bench.sh (sourced): runtimes started by hand (CRI-O,
# say, which the package registries here do not have), added as columns.
#
#   BENCH_PEERS="NAME=ENDPOINT[,root=DIR][,helpers=STRING] ..."
#
# NAME is the column, ENDPOINT its CRI socket (unix:///run/crio/crio.sock).
# The daemon is the process listening on the socket (ss). root=DIR is its
# image and container store, for the disk figures (without it those are
# n/a); helpers=STRING picks its other processes by command line (conmon
# for CRI-O), for the memory and CPU figures. The benchmark never
# configures, restarts or stops such a runtime; it removes only the pods it
# made (labelled berth-bench). Its registry configuration must mirror the
# public registries to the test registry ($BENCH_REGISTRY) over plain HTTP,
# as the other columns' hosts.toml do, or its pulls fail and say so.

# peers_targets prints one targets.json entry per BENCH_PEERS entry: an
# unavailable one when it does not answer.
peers_targets() {
	local entry name rest endpoint opt root helpers pid
	for entry in ${BENCH_PEERS:-}; do
		name=${entry%%=*} rest=${entry#*=} root= helpers=
		endpoint=${rest%%,*}
		if [[ $entry != *=* || -z $name || -z $endpoint ]]; then
			unavailable_target "${name:-peer}" "BENCH_PEERS entry '$entry': want NAME=ENDPOINT[,root=DIR][,helpers=STRING]"
			continue
		fi
		[[ $endpoint == */* && $endpoint != unix://* ]] && endpoint=unix://$endpoint
		IFS=, read -ra opts <<<"${rest#"$endpoint"}"
		for opt in "${opts[@]}"; do
			case $opt in
			root=*) root=${opt#root=} ;;
			helpers=*) helpers=${opt#helpers=} ;;
			esac
		done
		if ! crictl --timeout 5s -r "$endpoint" version >/dev/null 2>&1; then
			unavailable_target "$name" "BENCH_PEERS: $endpoint does not answer the CRI Version call"
			continue
		fi
		pid=$(ss -xlpn 2>/dev/null | awk -v s="${endpoint#unix://}" '$5 == s' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
		if [[ -z $pid ]]; then
			unavailable_target "$name" "BENCH_PEERS: no process found listening on $endpoint (ss -xlp)"
			continue
		fi
		mkdir -p "$BENCH_WORK/peers/$name/logs"
		printf '{"name": "%s", "endpoint": "%s", "daemon_pid": %d, "root_dir": "%s", "log_dir": "%s"' \
			"$name" "$endpoint" "$pid" "$root" "$BENCH_WORK/peers/$name/logs"
		[[ -z $helpers ]] || printf ', "helper_cmdline": ["%s"]' "$helpers"
		printf ', "versions": [["readlink", "/proc/%d/exe"]]}\n' "$pid"
	done
}

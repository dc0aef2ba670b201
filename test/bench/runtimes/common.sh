# Shared by the runtime scripts of hack/bench.sh (sourced, not run).

# write_mirrors DIR [EXTRA_HOST...]: a containerd-format hosts.toml
# directory mirroring every public registry the benchmark names to the
# test registry, with no fallback: `server` itself is the mirror, so the
# real registries are never contacted, not even resolved.
write_mirrors() {
	local dir=$1 host
	shift
	rm -rf "$dir"
	for host in registry.k8s.io k8s.gcr.io gcr.io public.ecr.aws docker.io quay.io "$@"; do
		mkdir -p "$dir/$host"
		cat >"$dir/$host/hosts.toml" <<-TOML
			server = "http://$BENCH_REGISTRY"
			[host."http://$BENCH_REGISTRY"]
			  capabilities = ["pull", "resolve"]
		TOML
	done
}

# write_cni DIR NETWORK BRIDGE SUBNET DATADIR: the network of
# hack/cni/10-berth-bridge.conflist with names of its own, so that two
# runtimes on one host never share a bridge, an address range or IPAM state.
write_cni() {
	local dir=$1 network=$2 bridge=$3 subnet=$4 data=$5
	rm -rf "$dir"
	mkdir -p "$dir"
	sed -e "s#\"name\": \"berth\"#\"name\": \"$network\"#" \
		-e "s#\"bridge\": \"berth0\"#\"bridge\": \"$bridge\"#" \
		-e "s#10.85.0.0/16#$subnet#" \
		-e "s#/var/lib/berth/cni/networks#$data#" \
		"$BENCH_TOP/hack/cni/10-berth-bridge.conflist" >"$dir/10-$network.conflist"
	grep -q "\"$bridge\"" "$dir/10-$network.conflist" || {
		echo "bench: could not derive a CNI config from hack/cni/10-berth-bridge.conflist" >&2
		return 1
	}
}

# wait_cri NAME ENDPOINT PID LOG: wait until the runtime answers Version.
# PID must be the daemon itself (setsid execs it in place when run in the
# background): the memory figures are read from it.
wait_cri() {
	local name=$1 endpoint=$2 pid=$3 log=$4
	for _ in $(seq 150); do
		if crictl --timeout 2s -r "$endpoint" version >/dev/null 2>&1; then
			if [[ $(readlink "/proc/$pid/exe") == */setsid ]]; then
				echo "bench: pid $pid is setsid, not $name" >&2
				return 1
			fi
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "bench: $name exited at start; its log:" >&2
			tail -30 "$log" >&2
			return 1
		fi
		sleep 0.2
	done
	echo "bench: $name did not answer on $endpoint" >&2
	return 1
}

# remove_all_pods ENDPOINT: stop and remove every pod (containers with
# them), so that CNI DEL tears down addresses and iptables rules. Errors
# are ignored: a runtime may lack the RPCs, or have nothing to remove.
remove_all_pods() {
	timeout 300 crictl --timeout 60s -r "$1" -i "$1" rmp -fa >/dev/null 2>&1 || true
}

# stop_pid NAME PID: SIGTERM, wait up to 30 s, then SIGKILL.
stop_pid() {
	local name=$1 pid=$2
	kill -0 "$pid" 2>/dev/null || return 0
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 150); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.2
	done
	echo "bench: $name (pid $pid) ignored SIGTERM; killing it" >&2
	kill -KILL "$pid" 2>/dev/null || true
}

# pids_matching STRING...: pids whose command line contains every STRING.
pids_matching() {
	local d cmd s ok
	for d in /proc/[0-9]*; do
		cmd=$(tr '\0' ' ' 2>/dev/null <"$d/cmdline") || continue
		[[ -n $cmd ]] || continue
		ok=1
		for s in "$@"; do
			[[ $cmd == *"$s"* ]] || ok=0
		done
		((ok)) && echo "${d#/proc/}"
	done
	return 0
}

# remove_bridge NAME NETWORK: delete the CNI bridge (CNI DEL leaves it),
# and any iptables masquerade chain of NETWORK a crashed pod teardown left.
remove_bridge() {
	local bridge=$1 network=$2 rule chain
	ip link del "$bridge" 2>/dev/null || true
	while read -r rule; do
		chain=$(sed -n 's/.* -j \(CNI-[0-9a-f]*\)$/\1/p' <<<"$rule")
		# shellcheck disable=SC2086 # the rule is a list of arguments
		eval iptables -t nat -D ${rule#-A } 2>/dev/null || true
		if [[ -n $chain ]]; then
			iptables -t nat -F "$chain" 2>/dev/null || true
			iptables -t nat -X "$chain" 2>/dev/null || true
		fi
	done < <(iptables -t nat -S POSTROUTING 2>/dev/null | grep -F "name: \\\"$network\\\"" || true)
}

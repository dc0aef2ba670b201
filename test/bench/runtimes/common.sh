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

# prepare_dirs DIR NETWORK BRIDGE SUBNET [EXTRA_HOST...]: a runtime's
# log dir, mirrors (DIR/certs.d) and CNI network (DIR/net.d, IPAM state
# in DIR/cni-networks).
prepare_dirs() {
	local dir=$1 network=$2 bridge=$3 subnet=$4
	shift 4
	mkdir -p "$dir/logs"
	write_mirrors "$dir/certs.d" "$@"
	write_cni "$dir/net.d" "$network" "$bridge" "$subnet" "$dir/cni-networks"
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

# containerd keeps shim sockets and runc state under /run/containerd
# whatever its state dir: remove those dirs at the end if we made them.
CTRD_RUN_EXISTED=0
[[ -e /run/containerd ]] && CTRD_RUN_EXISTED=1
# containerd pins pod network namespaces in /var/run/netns/cni-* (1.6) or
# in its state dir (2.3, netns_mounts_under_state_dir); removing a pod
# unpins it. Those a crash left are the ones not there before.
CTRD_NETNS_BEFORE=$(ls /var/run/netns 2>/dev/null || true)
# With no cgroup parent, containers go to k8s.io/<id> in each hierarchy;
# runc removes <id>, the k8s.io parents stay.
CTRD_CGROUPS_EXISTED=0
compgen -G "/sys/fs/cgroup/*/k8s.io" >/dev/null && CTRD_CGROUPS_EXISTED=1

# stop_containerd_like PID SOCK BRIDGE NETWORK: what containerd_stop and
# containerd2_stop share: remove every pod first (the shims would outlive
# containerd, and CNI DEL needs it), stop the daemon, then any shim left
# behind, leftover network namespaces, the bridge, and the dirs it made.
stop_containerd_like() {
	local pid=$1 sock=$2 bridge=$3 network=$4 ns
	if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
		remove_all_pods "unix://$sock"
		stop_pid containerd "$pid"
		wait "$pid" 2>/dev/null || true
	fi
	for pid in $(pids_matching containerd-shim "-address $sock"); do
		echo "bench: stopping leftover containerd shim $pid" >&2
		stop_pid containerd-shim "$pid"
	done
	for ns in /var/run/netns/cni-*; do
		[[ -e $ns ]] && ! grep -qxF "${ns##*/}" <<<"$CTRD_NETNS_BEFORE" || continue
		echo "bench: removing leftover network namespace $ns" >&2
		umount "$ns" 2>/dev/null || true
		rm -f "$ns"
	done
	remove_bridge "$bridge" "$network"
	if ((!CTRD_RUN_EXISTED)); then
		# rmdir: only what is empty, nothing another containerd uses.
		rmdir /run/containerd/runc/k8s.io /run/containerd/runc /run/containerd/s /run/containerd 2>/dev/null || true
	fi
	if ((!CTRD_CGROUPS_EXISTED)); then
		rmdir /sys/fs/cgroup/*/k8s.io 2>/dev/null || true
	fi
}

# launch_daemon DIR LOG CMD...: start a daemon, appending its output to
# DIR/LOG, and record its pid in LAUNCHED_PID and DIR/daemon.pid (which a
# restart by runtimes/restart.sh, another process, rewrites). setsid: a
# Ctrl-C of make bench must reach the benchmark, which then removes its
# pods, not the daemon, which would leave them behind.
launch_daemon() {
	local dir=$1 log=$2
	shift 2
	setsid "$@" >>"$dir/$log" 2>&1 &
	LAUNCHED_PID=$!
	echo "$LAUNCHED_PID" >"$dir/daemon.pid"
}

# containerd_like_target NAME DIR PID RESTART_ARG CONTAINERD RUNC: the
# targets.json entry of a containerd column.
containerd_like_target() {
	local name=$1 dir=$2 pid=$3 restart=$4 ctrd=$5 runc=$6
	cat <<-JSON
		{"name": "$name", "endpoint": "unix://$dir/containerd.sock", "daemon_pid": $pid,
		 "helper_cmdline": ["containerd-shim", "-address $dir/containerd.sock"],
		 "root_dir": "$dir/root", "log_dir": "$dir/logs",
		 "cni_conf_dir": "$dir/net.d",
		 "restart": ["$BENCH_TOP/test/bench/runtimes/restart.sh", "$restart"],
		 "versions": [["$ctrd", "--version"], ["$runc", "--version"]]}
	JSON
}

# daemon_pid DIR PID: the daemon's current pid: DIR/daemon.pid, which a
# restart (runtimes/restart.sh, another process) rewrites, else PID.
daemon_pid() {
	local p
	p=$(cat "$1/daemon.pid" 2>/dev/null || true)
	echo "${p:-$2}"
}

# restart_daemon NAME PID LAUNCH VAR: node-burst's restart,
# run by runtimes/restart.sh with the runtime's pods left running: SIGTERM
# to the daemon (its pods' processes stay: shims, berth's supervisor),
# then LAUNCH, which starts it again and sets VAR to the new pid. Prints
# one JSON line for berth-bench: the new pid and when it was launched
# (unix ns), from which berth-bench times the recovery itself.
restart_daemon() {
	local name=$1 pid=$2 launch=$3 var=$4 t0
	stop_pid "$name" "$pid"
	# Not our child: wait until it is gone, not only signalled.
	while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
	t0=$(date +%s%N)
	"$launch"
	printf '{"pid": %d, "launched_ns": %s}\n' "${!var}" "$t0"
}

# unavailable_target NAME REASON: a targets.json entry for a runtime that
# could not be built or started: the report shows its column as such.
unavailable_target() {
	local reason
	reason=$(printf '%s' "$2" | tr '\n\t' '  ' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')
	printf '{"name": "%s", "unavailable": "%s"}\n' "$1" "$reason"
}

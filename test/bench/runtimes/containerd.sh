# containerd for hack/bench.sh (sourced): Debian's package, its CRI plugin
# on a private socket, root and state dir, cgroupfs, its own CNI network.

CTRD_DIR=$BENCH_WORK/containerd
CTRD_SOCK=$CTRD_DIR/containerd.sock
CTRD_NETWORK=ctrd-bench CTRD_BRIDGE=cbench0 CTRD_SUBNET=10.232.0.0/16
CTRD_PID=
# containerd 1.6 keeps shim sockets and runc state under /run/containerd
# whatever its state dir: remove those dirs at the end if we made them.
CTRD_RUN_EXISTED=0
[[ -e /run/containerd ]] && CTRD_RUN_EXISTED=1
# containerd 1.6 pins pod network namespaces in /var/run/netns/cni-*;
# removing a pod unpins it. Those a crash left are the ones not there before.
CTRD_NETNS_BEFORE=$(ls /var/run/netns 2>/dev/null || true)
# With no cgroup parent, containers go to k8s.io/<id> in each hierarchy;
# runc removes <id>, the k8s.io parents stay.
CTRD_CGROUPS_EXISTED=0
compgen -G "/sys/fs/cgroup/*/k8s.io" >/dev/null && CTRD_CGROUPS_EXISTED=1

containerd_install() {
	dpkg-query -W -f='${Status}' containerd 2>/dev/null | grep -q "install ok installed" && return 0
	echo "bench: installing Debian's containerd"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -q install -y --no-install-recommends containerd >/dev/null ||
		{ apt-get -q update >/dev/null && apt-get -q install -y --no-install-recommends containerd >/dev/null; }
}

containerd_start() {
	mkdir -p "$CTRD_DIR/logs"
	# 127.0.0.1:5000 too, so that plain HTTP to the images named by it does
	# not depend on the localhost defaults of a containerd version.
	write_mirrors "$CTRD_DIR/certs.d" "$BENCH_REGISTRY"
	write_cni "$CTRD_DIR/net.d" "$CTRD_NETWORK" "$CTRD_BRIDGE" "$CTRD_SUBNET" "$CTRD_DIR/cni-networks"
	# Plugins the benchmark does not use are disabled: other snapshotters,
	# tracing, and "opt" (which writes to /opt/containerd). The v1 runtime
	# stays: 1.6's tasks service, and so its CRI plugin, requires it.
	# The streaming server listens on loopback, on a free port.
	# restrict_oom_score_adj: the pause container's usual -998 needs
	# CAP_SYS_RESOURCE, which this VM's bounding set lacks; clamp it.
	cat >"$CTRD_DIR/config.toml" <<-TOML
		version = 2
		root = "$CTRD_DIR/root"
		state = "$CTRD_DIR/state"
		disabled_plugins = [
		  "io.containerd.internal.v1.opt",
		  "io.containerd.internal.v1.tracing",
		  "io.containerd.tracing.processor.v1.otlp",
		  "io.containerd.snapshotter.v1.aufs",
		  "io.containerd.snapshotter.v1.btrfs",
		  "io.containerd.snapshotter.v1.devmapper",
		  "io.containerd.snapshotter.v1.zfs",
		]
		[grpc]
		  address = "$CTRD_SOCK"
		[ttrpc]
		  address = "$CTRD_SOCK.ttrpc"
		[plugins."io.containerd.grpc.v1.cri"]
		  sandbox_image = "registry.k8s.io/pause:3.10"
		  stream_server_address = "127.0.0.1"
		  stream_server_port = "0"
		  restrict_oom_score_adj = true
		  [plugins."io.containerd.grpc.v1.cri".containerd]
		    snapshotter = "overlayfs"
		    default_runtime_name = "runc"
		    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
		      runtime_type = "io.containerd.runc.v2"
		      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
		        SystemdCgroup = false
		  [plugins."io.containerd.grpc.v1.cri".cni]
		    bin_dir = "/usr/lib/cni"
		    conf_dir = "$CTRD_DIR/net.d"
		    max_conf_num = 1
		  [plugins."io.containerd.grpc.v1.cri".registry]
		    config_path = "$CTRD_DIR/certs.d"
	TOML
	# setsid: a Ctrl-C of make bench must reach the benchmark, which then
	# removes its pods, not the daemon, which would leave them behind.
	setsid containerd --config "$CTRD_DIR/config.toml" --log-level warn >"$CTRD_DIR/containerd.log" 2>&1 &
	CTRD_PID=$!
	wait_cri containerd "unix://$CTRD_SOCK" "$CTRD_PID" "$CTRD_DIR/containerd.log"
}

# containerd_target: this runtime's entry of targets.json.
containerd_target() {
	cat <<-JSON
		{"name": "containerd", "endpoint": "unix://$CTRD_SOCK", "daemon_pid": $CTRD_PID,
		 "helper_cmdline": ["containerd-shim", "-address $CTRD_SOCK"],
		 "root_dir": "$CTRD_DIR/root", "log_dir": "$CTRD_DIR/logs",
		 "versions": [["containerd", "--version"], ["runc", "--version"]]}
	JSON
}

# containerd_stop: remove every pod first (the shims would outlive
# containerd, and CNI DEL needs it), stop it, then any shim left behind.
containerd_stop() {
	local pid ns
	if [[ -n $CTRD_PID ]] && kill -0 "$CTRD_PID" 2>/dev/null; then
		remove_all_pods "unix://$CTRD_SOCK"
		stop_pid containerd "$CTRD_PID"
		wait "$CTRD_PID" 2>/dev/null || true
	fi
	for pid in $(pids_matching containerd-shim "-address $CTRD_SOCK"); do
		echo "bench: stopping leftover containerd shim $pid" >&2
		stop_pid containerd-shim "$pid"
	done
	for ns in /var/run/netns/cni-*; do
		[[ -e $ns ]] && ! grep -qxF "${ns##*/}" <<<"$CTRD_NETNS_BEFORE" || continue
		echo "bench: removing leftover network namespace $ns" >&2
		umount "$ns" 2>/dev/null || true
		rm -f "$ns"
	done
	remove_bridge "$CTRD_BRIDGE" "$CTRD_NETWORK"
	if ((!CTRD_RUN_EXISTED)); then
		# rmdir: only what is empty, nothing another containerd uses.
		rmdir /run/containerd/runc/k8s.io /run/containerd/runc /run/containerd/s /run/containerd 2>/dev/null || true
	fi
	if ((!CTRD_CGROUPS_EXISTED)); then
		rmdir /sys/fs/cgroup/*/k8s.io 2>/dev/null || true
	fi
}

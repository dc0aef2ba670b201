# containerd 1.6 for hack/bench.sh (sourced): Debian's package, its CRI
# plugin on a private socket, root and state dir, cgroupfs, its own CNI
# network. The column is "containerd-1.6"; containerd2.sh adds 2.3.

CTRD_DIR=$BENCH_WORK/containerd
CTRD_SOCK=$CTRD_DIR/containerd.sock
CTRD_NETWORK=ctrd-bench CTRD_BRIDGE=cbench0 CTRD_SUBNET=10.232.0.0/16
CTRD_PID=
CTRD_NAME=containerd-1.6

containerd_install() {
	dpkg-query -W -f='${Status}' containerd 2>/dev/null | grep -q "install ok installed" && return 0
	echo "bench: installing Debian's containerd"
	export DEBIAN_FRONTEND=noninteractive
	# Another apt-get (a neighbour's install) may hold the lock: wait for it.
	local apt=(apt-get -q -o DPkg::Lock::Timeout=300)
	"${apt[@]}" install -y --no-install-recommends containerd >/dev/null ||
		{ "${apt[@]}" update >/dev/null && "${apt[@]}" install -y --no-install-recommends containerd >/dev/null; }
}

containerd_start() {
	containerd_configure
	containerd_launch
	wait_cri containerd "unix://$CTRD_SOCK" "$CTRD_PID" "$CTRD_DIR/containerd.log"
}

containerd_launch() {
	launch_daemon "$CTRD_DIR" containerd.log containerd --config "$CTRD_DIR/config.toml" --log-level warn
	CTRD_PID=$LAUNCHED_PID
}

# containerd_restart: for node-burst's restart (runtimes/restart.sh).
containerd_restart() {
	restart_daemon containerd "$(daemon_pid "$CTRD_DIR" "$CTRD_PID")" containerd_launch CTRD_PID
}

containerd_configure() {
	# 127.0.0.1:5000 too, so that plain HTTP to the images named by it does
	# not depend on the localhost defaults of a containerd version.
	prepare_dirs "$CTRD_DIR" "$CTRD_NETWORK" "$CTRD_BRIDGE" "$CTRD_SUBNET" "$BENCH_REGISTRY"
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
}

# containerd_target: this runtime's entry of targets.json.
containerd_target() {
	containerd_like_target "$CTRD_NAME" "$CTRD_DIR" "$CTRD_PID" containerd containerd runc
}

# containerd_stop: remove every pod first (the shims would outlive
# containerd, and CNI DEL needs it), stop it, then any shim left behind.
containerd_stop() {
	CTRD_PID=$(daemon_pid "$CTRD_DIR" "$CTRD_PID")
	stop_containerd_like "$CTRD_PID" "$CTRD_SOCK" "$CTRD_BRIDGE" "$CTRD_NETWORK"
}

# containerd 2.3 with runc 1.3 for hack/bench.sh (sourced): built from the
# Go module proxy with go install on first use and kept in
# /var/tmp/berth-bench-peers (a directory per version), configured like
# the 1.6 column (containerd.sh): its CRI plugin on a private socket, root
# and state dir, cgroupfs, the same mirrors, its own CNI network, plus
# what its users run it with: parallel layer unpack. Not multipart fetch
# (concurrent_layer_fetch_buffer): it needs Range requests, which the test
# registry (crane registry serve) answers with 416, failing every pull.

CTRD2_VERSION=${BENCH_CONTAINERD2_VERSION:-v2.3.7}
RUNC13_VERSION=${BENCH_RUNC13_VERSION:-v1.3.7}
BENCH_PEERS_CACHE=${BENCH_PEERS_CACHE:-/var/tmp/berth-bench-peers}
CTRD2_BIN=$BENCH_PEERS_CACHE/containerd-$CTRD2_VERSION/bin
RUNC13_BIN=$BENCH_PEERS_CACHE/runc-$RUNC13_VERSION/bin
CTRD2_DIR=$BENCH_WORK/containerd2
CTRD2_SOCK=$CTRD2_DIR/containerd.sock
CTRD2_NETWORK=ctrd2-bench CTRD2_BRIDGE=c2bench0 CTRD2_SUBNET=10.233.0.0/16
CTRD2_PID=
CTRD2_NAME=containerd-2.3

# peer_install DIR PKG... TAGS CGO: go install the packages (module@version)
# into DIR/bin once; a failed build leaves nothing in DIR, and its log in
# DIR.log. Built with one job: the machine may be shared.
peer_install() {
	local dir=$1 tags=$2 cgo=$3 tmp
	shift 3
	[[ -d $dir/bin ]] && return 0
	tmp=$dir.tmp
	rm -rf "$tmp"
	mkdir -p "$tmp/bin"
	echo "bench: building $* (go install, once; kept in $dir)"
	if ! GOFLAGS=-p=1 CGO_ENABLED=$cgo GOBIN=$tmp/bin go install -tags "$tags" "$@" >"$dir.log" 2>&1; then
		rm -rf "$tmp"
		echo "bench: go install $* failed; see $dir.log" >&2
		return 1
	fi
	mv "$tmp" "$dir"
}

# containerd2_install builds containerd, its runc shim and runc (with
# seccomp, as runc's releases are; cgo, libseccomp) unless cached.
containerd2_install() {
	local m=github.com/containerd/containerd/v2/cmd
	peer_install "${CTRD2_BIN%/bin}" "" 0 "$m/containerd@$CTRD2_VERSION" "$m/containerd-shim-runc-v2@$CTRD2_VERSION" &&
		peer_install "${RUNC13_BIN%/bin}" seccomp 1 "github.com/opencontainers/runc@$RUNC13_VERSION"
}

containerd2_start() {
	containerd2_configure
	containerd2_launch
	wait_cri "$CTRD2_NAME" "unix://$CTRD2_SOCK" "$CTRD2_PID" "$CTRD2_DIR/containerd.log"
}

# containerd2_launch: the shim is found on PATH (ours first), runc by
# BinaryName.
containerd2_launch() {
	PATH=$CTRD2_BIN:$PATH launch_daemon "$CTRD2_DIR" containerd.log "$CTRD2_BIN/containerd" --config "$CTRD2_DIR/config.toml" --log-level warn
	CTRD2_PID=$LAUNCHED_PID
}

containerd2_restart() {
	restart_daemon containerd "$(daemon_pid "$CTRD2_DIR" "$CTRD2_PID")" containerd2_launch CTRD2_PID
}

# containerd2_configure writes the version 3 config: the 1.6 column's
# settings under 2.x's plugin names. Pulls go through the transfer
# service (CRI's default in 2.x): 3 layers downloaded at once (the
# default) and 3 unpacked at once (parallel unpack; 1 by default). Pod
# network namespaces are pinned in its state dir, not /var/run/netns.
# Restoring a checkpoint by CreateContainer (the checkpoint workload) is
# off by default: on, as for anyone who uses it.
containerd2_configure() {
	prepare_dirs "$CTRD2_DIR" "$CTRD2_NETWORK" "$CTRD2_BRIDGE" "$CTRD2_SUBNET" "$BENCH_REGISTRY"
	cat >"$CTRD2_DIR/config.toml" <<-TOML
		version = 3
		root = "$CTRD2_DIR/root"
		state = "$CTRD2_DIR/state"
		disabled_plugins = [
		  "io.containerd.internal.v1.opt",
		  "io.containerd.internal.v1.tracing",
		  "io.containerd.tracing.processor.v1.otlp",
		  "io.containerd.snapshotter.v1.blockfile",
		  "io.containerd.snapshotter.v1.btrfs",
		  "io.containerd.snapshotter.v1.devmapper",
		  "io.containerd.snapshotter.v1.erofs",
		  "io.containerd.snapshotter.v1.zfs",
		]
		[grpc]
		  address = "$CTRD2_SOCK"
		[ttrpc]
		  address = "$CTRD2_SOCK.ttrpc"
		[plugins."io.containerd.grpc.v1.cri"]
		  stream_server_address = "127.0.0.1"
		  stream_server_port = "0"
		[plugins."io.containerd.cri.v1.images"]
		  snapshotter = "overlayfs"
		  max_concurrent_downloads = 3
		  [plugins."io.containerd.cri.v1.images".pinned_images]
		    sandbox = "registry.k8s.io/pause:3.10"
		  [plugins."io.containerd.cri.v1.images".registry]
		    config_path = "$CTRD2_DIR/certs.d"
		[plugins."io.containerd.cri.v1.runtime"]
		  restrict_oom_score_adj = true
		  netns_mounts_under_state_dir = true
		  enable_experimental_restore_via_create = true
		  [plugins."io.containerd.cri.v1.runtime".containerd]
		    default_runtime_name = "runc"
		    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
		      runtime_type = "io.containerd.runc.v2"
		      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
		        SystemdCgroup = false
		        BinaryName = "$RUNC13_BIN/runc"
		  [plugins."io.containerd.cri.v1.runtime".cni]
		    bin_dirs = ["/usr/lib/cni"]
		    conf_dir = "$CTRD2_DIR/net.d"
		    max_conf_num = 1
		[plugins."io.containerd.transfer.v1.local"]
		  max_concurrent_downloads = 3
		  max_concurrent_unpacks = 3
		  config_path = "$CTRD2_DIR/certs.d"
	TOML
}

containerd2_target() {
	containerd_like_target "$CTRD2_NAME" "$CTRD2_DIR" "$CTRD2_PID" containerd2 "$CTRD2_BIN/containerd" "$RUNC13_BIN/runc"
}

containerd2_stop() {
	CTRD2_PID=$(daemon_pid "$CTRD2_DIR" "$CTRD2_PID")
	stop_containerd_like "$CTRD2_PID" "$CTRD2_SOCK" "$CTRD2_BRIDGE" "$CTRD2_NETWORK"
}

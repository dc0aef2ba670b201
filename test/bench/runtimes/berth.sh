# berthd for hack/bench.sh (sourced): bin/berthd from make build, private
# dirs, the same mirrors, its own CNI network.

BERTH_DIR=$BENCH_WORK/berth
BERTH_SOCK=$BERTH_DIR/run/berth.sock
BERTH_NETWORK=berth-bench BERTH_BRIDGE=bbench0 BERTH_SUBNET=10.231.0.0/16
BERTHD=${BERTHD:-$BENCH_TOP/bin/berthd}
BERTH_POLICY=$BERTH_DIR/policy/image-policy.toml
BERTH_PID=

berth_start() {
	berth_configure
	berth_launch
	wait_cri berthd "unix://$BERTH_SOCK" "$BERTH_PID" "$BERTH_DIR/berthd.log"
}

berth_launch() {
	launch_daemon "$BERTH_DIR" berthd.log "$BERTHD" --config "$BERTH_DIR/berth.toml"
	BERTH_PID=$LAUNCHED_PID
}

# berth_restart: for node-burst's restart (runtimes/restart.sh). The
# supervisor and the containers stay; berthd recovers them at start.
berth_restart() {
	restart_daemon berthd "$(daemon_pid "$BERTH_DIR" "$BERTH_PID")" berth_launch BERTH_PID
}

berth_configure() {
	prepare_dirs "$BERTH_DIR" "$BERTH_NETWORK" "$BERTH_BRIDGE" "$BERTH_SUBNET"
	# Accept everything until the image-policy workload writes its own
	# policy (a sigstore scope over its repository only) and sends SIGHUP.
	mkdir -p "$BERTH_DIR/policy"
	printf '[default]\ntype = "accept"\n' >"$BERTH_POLICY"
	cat >"$BERTH_DIR/berth.toml" <<-TOML
		listen = "$BERTH_SOCK"
		root_dir = "$BERTH_DIR/root"
		state_dir = "$BERTH_DIR/run"
		log_level = "warn"
		sandbox_image = "registry.k8s.io/pause:3.10"
		[registry]
		config_path = "$BERTH_DIR/certs.d"
		image_policy = "$BERTH_POLICY"
		[cni]
		conf_dir = "$BERTH_DIR/net.d"
		bin_dirs = ["/usr/lib/cni"]
	TOML
}

# berth_target: this runtime's entry of targets.json. The supervisor is
# found by the state dir on its command line; spec_path is where berthd
# writes a container's OCI spec (internal/container: the bundle's);
# floor_dir puts the floor's libcontainer state in berthd's state dir,
# beside the supervisor's (a tmpfs berthd mounted, when the host's is on
# disk), so that both pay the same for it. image_policy is the file the
# image-policy workload rewrites.
berth_target() {
	cat <<-JSON
		{"name": "berth", "endpoint": "unix://$BERTH_SOCK", "daemon_pid": $BERTH_PID,
		 "helper_cmdline": ["berth-supervisor", "--state-dir $BERTH_DIR/run"],
		 "root_dir": "$BERTH_DIR/root", "log_dir": "$BERTH_DIR/logs",
		 "spec_path": "$BERTH_DIR/run/containers/{id}/bundle/config.json",
		 "floor_dir": "$BERTH_DIR/run/bench-floor",
		 "image_policy": "$BERTH_POLICY",
		 "cni_conf_dir": "$BERTH_DIR/net.d",
		 "restart": ["$BENCH_TOP/test/bench/runtimes/restart.sh", "berth"],
		 "versions": [["$BERTHD", "--version"]]}
	JSON
}

# berth_stop: remove every pod, stop berthd, then its supervisor, which is
# detached on purpose (it outlives berthd restarts) and so is ours to stop.
berth_stop() {
	local pid
	BERTH_PID=$(daemon_pid "$BERTH_DIR" "$BERTH_PID")
	if [[ -n $BERTH_PID ]] && kill -0 "$BERTH_PID" 2>/dev/null; then
		remove_all_pods "unix://$BERTH_SOCK"
		stop_pid berthd "$BERTH_PID"
		wait "$BERTH_PID" 2>/dev/null || true
	fi
	# The keeper first (it passes SIGTERM on and ends with its supervisor):
	# a supervisor stopped alone is started again by its keeper.
	for pid in $(pids_matching berth-supervisor "--state-dir $BERTH_DIR/run"); do
		[[ $(cat "/proc/$pid/comm" 2>/dev/null) == berth-keeper ]] && stop_pid berth-keeper "$pid"
	done
	for pid in $(pids_matching berth-supervisor "--state-dir $BERTH_DIR/run"); do
		stop_pid berth-supervisor "$pid"
	done
	remove_bridge "$BERTH_BRIDGE" "$BERTH_NETWORK"
}

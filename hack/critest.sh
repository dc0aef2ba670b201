#!/usr/bin/env bash
# Run critest against a freshly started berthd, with the offline test
# registry as the mirror of every public registry critest names.
#
#   hack/critest.sh [critest args...]     e.g. --ginkgo.focus='Image Manager'
#
# Environment:
#   HARNESS       the cri-harness directory (default ../shared/cri-harness)
#   BERTHD        berthd binary (default bin/berthd)
#   WORK          berthd's private dirs and config (default /tmp/berth-critest)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
harness=${HARNESS:-$top/../shared/cri-harness}
berthd=${BERTHD:-$top/bin/berthd}
work=${WORK:-/tmp/berth-critest}
registry=127.0.0.1:5000

"$harness/install-tools.sh" >/dev/null
"$harness/test-registry.sh" start >/dev/null

rm -rf "$work/certs.d"
mkdir -p "$work/certs.d" "$work/net.d"
# Mirrors with no fallback: `server` itself is the mirror, so the real
# registries are never contacted (not even resolved).
for host in registry.k8s.io k8s.gcr.io gcr.io public.ecr.aws docker.io quay.io; do
	mkdir -p "$work/certs.d/$host"
	cat >"$work/certs.d/$host/hosts.toml" <<TOML
server = "http://$registry"
[host."http://$registry"]
  capabilities = ["pull", "resolve"]
TOML
done
"$top/hack/cni/install.sh" "$work/net.d" >/dev/null 2>&1 || true

cat >"$work/berth.toml" <<TOML
listen = "$work/run/berth.sock"
root_dir = "$work/root"
state_dir = "$work/run"
sandbox_image = "registry.k8s.io/pause:3.10"
[registry]
config_path = "$work/certs.d"
[cni]
conf_dir = "$work/net.d"
TOML

"$berthd" --config "$work/berth.toml" >"$work/berthd.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
	[[ -S $work/run/berth.sock ]] && break
	kill -0 $pid 2>/dev/null || { cat "$work/berthd.log" >&2; exit 1; }
	sleep 0.1
done

CRITEST_REPORT_DIR=${CRITEST_REPORT_DIR:-$top/critest-report} \
	"$harness/run-critest.sh" "unix://$work/run/berth.sock" "$@"

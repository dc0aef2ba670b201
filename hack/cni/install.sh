#!/bin/sh
# Installs Berth's sample CNI network (bridge berth0, 10.85.0.0/16, host
# ports, bandwidth limits) into a CNI conf dir. Idempotent: an identical
# file is left alone, so berthd's watcher sees no change.
#
#   hack/cni/install.sh [CONF_DIR]     (default /etc/cni/net.d)
#
# The network, bridge and host-local dataDir names are Berth's own, so the
# config can sit beside another runtime's on a shared host; its file name
# sorts early so that it is the default network of a conf dir Berth reads.
# The subnet is fixed; to allocate from kubelet's pod CIDR instead, replace
# "ranges" with a bridge capability {"ipRanges": true} (host-local adds the
# pod CIDR as an extra range set, so keeping both gives a pod two IPv4s).
set -eu

src_dir=$(cd "$(dirname "$0")" && pwd)
conf_dir=${1:-/etc/cni/net.d}
name=10-berth-bridge.conflist

for plugin in bridge host-local loopback portmap bandwidth; do
	if [ ! -x "/opt/cni/bin/$plugin" ] && [ ! -x "/usr/lib/cni/$plugin" ]; then
		echo "install.sh: CNI plugin $plugin not found in /opt/cni/bin or /usr/lib/cni" >&2
		exit 1
	fi
done

mkdir -p "$conf_dir"
if cmp -s "$src_dir/$name" "$conf_dir/$name"; then
	exit 0
fi
# Write beside the target and rename, so a watcher never reads half a file;
# the temporary name has no config extension, so it is never loaded.
tmp=$(mktemp "$conf_dir/.$name.XXXXXX")
trap 'rm -f "$tmp"' EXIT
cp "$src_dir/$name" "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$conf_dir/$name"
trap - EXIT
echo "installed $conf_dir/$name"

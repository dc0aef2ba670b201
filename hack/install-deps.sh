#!/usr/bin/env bash
# Install, idempotently, what a fresh Debian 12 machine lacks to build, run
# and test berthd. Only packages that are missing are installed, so a second
# run costs a few dpkg queries.
#
#   hack/install-deps.sh            build + run + test dependencies
set -euo pipefail

packages=(
	gcc libc6-dev pkg-config libseccomp-dev # cgo: libcontainer's nsenter, seccomp
	containernetworking-plugins iptables    # CNI plugins (in /usr/lib/cni), portmap/masquerade
	iproute2 util-linux                     # ip, nsenter/mount for tests
	runc                                    # the "oci" RuntimeClass handler type, in tests
	busybox-static                          # tiny root filesystems in tests
	apparmor                                # apparmor_parser: the default profile compiles (tests)
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	if [[ $(id -u) != 0 ]]; then
		echo "install-deps: missing ${missing[*]}; run as root" >&2
		exit 1
	fi
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -q update
	apt-get -q install -y --no-install-recommends "${missing[@]}"
fi
command -v go >/dev/null || {
	echo "install-deps: Go 1.26 is required (not installed by this script)" >&2
	exit 1
}

#!/usr/bin/env bash
# Install, idempotently, a CRIU new enough for checkpoint/restore on this
# fleet's kernels, as /usr/local/sbin/criu (berthd's default `criu_path`).
#
# Why a build: CRIU older than 4.1 fails every operation on Linux 6.13 and
# newer ("Unexpected rt vDSO area bounds": the kernel split [vvar] into
# [vvar] + [vvar_vclock], fixed in CRIU 4.1). Debian 12 ships 3.17.1 and
# has no backport; Debian 13's 4.1.1 package needs glibc 2.38. So the
# upstream tarball Debian 13 (trixie) ships is rebuilt here, fetched through
# apt with a private configuration (the system's apt sources are not
# touched) and checked against the hash pinned below.
#
# Cached: the built binary is kept in $CRIU_CACHE (default
# /var/tmp/berth-criu); a second run with the binary installed only runs
# `criu --version` (a few ms), a run after /usr/local/sbin/criu was removed
# copies the cached build back. A build takes about 75 s on 2 cores.
#
#   hack/install-criu.sh          install (or keep) /usr/local/sbin/criu
#   CRIU_DEST=/path hack/install-criu.sh
set -euo pipefail

version=4.1.1
tarball=criu_${version}.orig.tar.xz
sha256=f80a66cb3726bb2116266d4759ce3bcbfab7abdb6b6d430bf20dd41911717afe
dest=${CRIU_DEST:-/usr/local/sbin/criu}
cache=${CRIU_CACHE:-/var/tmp/berth-criu}

# The libraries the binary links against, all in Debian 12.
runtime_pkgs=(libprotobuf-c1 libnl-3-200 libnet1 libnftables1 libbsd0 libgnutls30 libuuid1 libcap2)
build_pkgs=(gcc make pkg-config libc6-dev dpkg-dev libbsd-dev libcap-dev libnet1-dev libnftables-dev libnl-3-dev
	libprotobuf-c-dev libprotobuf-dev protobuf-c-compiler protobuf-compiler uuid-dev libgnutls28-dev)

say() { echo "install-criu: $*" >&2; }

# installed_version prints the "major.minor.patch" of the criu at $1.
installed_version() {
	"$1" --version 2>/dev/null | sed -n 's/^Version: *//p' | head -1
}

# new_enough: version $1 >= 4.1.
new_enough() {
	local maj min
	IFS=. read -r maj min _ <<<"$1"
	[[ $maj =~ ^[0-9]+$ && $min =~ ^[0-9]+$ ]] || return 1
	((maj > 4 || (maj == 4 && min >= 1)))
}

apt_install_missing() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -q install -y --no-install-recommends "${missing[@]}" >/dev/null ||
		{ apt-get -q update >/dev/null && apt-get -q install -y --no-install-recommends "${missing[@]}" >/dev/null; }
}

if [[ -x $dest ]] && new_enough "$(installed_version "$dest")"; then
	exit 0
fi
if [[ $(id -u) != 0 ]]; then
	say "$dest is missing or older than 4.1; run as root"
	exit 1
fi
apt_install_missing "${runtime_pkgs[@]}"

built=$cache/criu-$version
if [[ ! -x $built ]] || ! new_enough "$(installed_version "$built")"; then
	apt_install_missing "${build_pkgs[@]}"
	mkdir -p "$cache"
	work=$(mktemp -d "$cache/build.XXXXXX")
	chmod 0755 "$work" # apt downloads as _apt
	trap 'rm -rf "$work"' EXIT
	if ! echo "$sha256  $cache/$tarball" | sha256sum -c --status - 2>/dev/null; then
		# The Debian mirror the host's apt already uses, read as trixie's
		# source index through a private lists directory.
		mirror=$(grep -hs -E '^URIs:|^deb ' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list |
			grep -m1 -E '/debian/?$' | awk '{print $2}') || true
		[[ -n $mirror ]] || { say "no Debian mirror in the host's apt sources"; exit 1; }
		apt=$work/apt
		mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$work/src"
		echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >"$apt/sources.list"
		opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
			-o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache")
		say "fetching CRIU $version's source from $mirror (trixie)"
		apt-get -q "${opts[@]}" update >/dev/null
		# Only the upstream tarball is needed; apt-get fails when the
		# Debian part cannot be fetched, so the hash below decides.
		(cd "$work/src" && apt-get -q "${opts[@]}" source --download-only "criu=$version-1" >/dev/null 2>&1) || true
		[[ -f $work/src/$tarball ]] || { say "trixie no longer serves $tarball"; exit 1; }
		echo "$sha256  $work/src/$tarball" | sha256sum -c --status - ||
			{ say "$tarball does not match the pinned sha256"; exit 1; }
		mv "$work/src/$tarball" "$cache/$tarball"
	fi
	say "building CRIU $version (about a minute)"
	tar -C "$work" -xf "$cache/$tarball"
	# Only the criu binary: no docs (asciidoc), no crit, no libcriu.
	nice -n 10 make -s -C "$work/criu-$version" -j"$(nproc)" criu >"$work/build.log" 2>&1 ||
		{ tail -30 "$work/build.log" >&2; say "build failed"; exit 1; }
	install -m 0755 "$work/criu-$version/criu/criu" "$built.new"
	mv "$built.new" "$built"
fi
install -D -m 0755 "$built" "$dest.new"
mv "$dest.new" "$dest"
say "installed $dest ($(installed_version "$dest"))"

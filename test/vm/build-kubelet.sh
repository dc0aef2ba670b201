#!/bin/bash
# Build kubelet from the Go module proxy (no release binaries can be
# fetched here) and print its path. Cached: a kubelet of the pinned version
# already built is reused. About 5 minutes on 2 cores the first time.
#
# `go install k8s.io/kubernetes/cmd/kubelet@vX` does not work: the main
# module replaces its staging modules (k8s.io/api, ...) with local paths. A
# scratch module that requires k8s.io/kubernetes and replaces each staging
# module with its published v0.X release builds it.
#
#   test/vm/build-kubelet.sh            # KUBELET_VERSION=1.37.2, OUT=/var/tmp/berth-vm-tools
set -euo pipefail
V=${KUBELET_VERSION:-1.37.2}
out=${OUT:-/var/tmp/berth-vm-tools}
bin=$out/kubelet-v$V
if [[ -x $bin ]] && "$bin" --version 2>/dev/null | grep -qF "v$V"; then
	echo "$bin"
	exit 0
fi
command -v jq >/dev/null || { apt-get -q update >&2 && DEBIAN_FRONTEND=noninteractive apt-get -q install -y jq >&2; }
work=$out/kubelet-build-$V
mkdir -p "$work"
cd "$work"
modfile=$(cd / && go mod download -json "k8s.io/kubernetes@v$V" | jq -r .GoMod)
sed -n '/^replace (/,/^)/p' "$modfile" | awk '/=>/{print $1}' |
	grep -vE 'sample-(cli-plugin|controller)$' >staging.txt
{
	printf 'module local/kubeletbuild\n\ngo 1.26.0\n\ngodebug default=go1.26\n\n'
	printf 'require k8s.io/kubernetes v%s\n\nreplace (\n' "$V"
	while read -r m; do printf '\t%s => %s v0.%s\n' "$m" "$m" "${V#1.}"; done <staging.txt
	echo ')'
} >go.mod
printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/kubelet"\n' >tools.go
go mod tidy >&2
start=$SECONDS
CGO_ENABLED=1 go build -trimpath \
	-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$V -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(cut -d. -f2 <<<"$V")" \
	-o "$bin.tmp" k8s.io/kubernetes/cmd/kubelet >&2
mv "$bin.tmp" "$bin"
echo "build-kubelet: kubelet v$V built in $((SECONDS - start))s" >&2
echo "$bin"

//go:build deps

// Package deps pins the modules Berth is built from while the packages that
// use them are being written. It is never compiled into a binary.
package deps

import (
	_ "github.com/BurntSushi/toml"
	_ "github.com/containerd/cgroups/v3"
	_ "github.com/containerd/platforms"
	_ "github.com/containernetworking/cni/libcni"
	_ "github.com/coreos/go-systemd/v22/activation"
	_ "github.com/coreos/go-systemd/v22/daemon"
	_ "github.com/cyphar/filepath-securejoin"
	_ "github.com/distribution/reference"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/klauspost/compress/gzip"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/opencontainers/cgroups/devices"
	_ "github.com/opencontainers/image-spec/specs-go/v1"
	_ "github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
	_ "github.com/opencontainers/runtime-spec/specs-go"
	_ "github.com/sirupsen/logrus"
	_ "golang.org/x/sys/unix"
	_ "google.golang.org/grpc"
	_ "k8s.io/cri-api/pkg/apis/runtime/v1"
	_ "k8s.io/cri-client/pkg"
	_ "k8s.io/cri-streaming/pkg/streaming"
)

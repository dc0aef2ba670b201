package sandbox

import (
	"context"
	"syscall"

	"github.com/opencontainers/go-digest"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/netns"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/registry"
	"github.com/berth-cri/berth/internal/snapshot"
	"github.com/berth-cri/berth/internal/userns"
)

// The interfaces below are the few methods the manager calls on each part
// (cmd/berthd passes the real ones): narrow enough that unit tests fake
// them, so run, rollback and recovery are tested without root.

// Images is what sandboxes need of the image service (*image.Service):
// the pause image, pulled if absent and held while the sandbox exists.
type Images interface {
	Use(ref, holder string) (image.Image, error)
	Release(id, holder string) error
	Pull(ctx context.Context, ref string, auth *registry.Auth, handler string) (image.Image, error)
}

// Snapshots is what sandboxes need of the snapshot store
// (*snapshot.Store): the pause's rootfs, keyed by sandbox id.
type Snapshots interface {
	PrepareRootfs(key string, chainIDs []digest.Digest) (snapshot.Mount, error)
	MountRootfs(key string) (string, error)
	MountRootfsMapped(key string, m userns.Mappings) (string, error)
	RemoveRootfs(key string) error
}

// Supervisor is what sandboxes need of the supervisor client
// (*client.Client): the pause process.
type Supervisor interface {
	Create(ctx context.Context, id string, req supv1.CreateRequest) (*supv1.State, error)
	Start(ctx context.Context, id string) (*supv1.State, error)
	State(ctx context.Context, id string) (*supv1.State, error)
	Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error
	Wait(ctx context.Context, id string) (*supv1.State, error)
	WaitExit(id string, wanted func() bool, retrying func(error)) (*supv1.State, error)
	Delete(ctx context.Context, id string) error
}

// Network is what sandboxes need of the pod network (*network.Manager).
type Network interface {
	Setup(ctx context.Context, p network.Pod) (network.Result, error)
	Teardown(ctx context.Context, p network.Pod) error
}

// NetNS makes, pins and removes the pods' network namespaces (HostNetNS:
// internal/netns, which needs root).
type NetNS interface {
	New(dir, id string) (string, error)
	Pin(dir, id, src string) (string, error)
	Remove(path string) error
	List(dir string) ([]string, error)
}

// HostNetNS is NetNS on the node (internal/netns).
type HostNetNS struct{}

func (HostNetNS) New(dir, id string) (string, error)      { return netns.New(dir, id) }
func (HostNetNS) Pin(dir, id, src string) (string, error) { return netns.Pin(dir, id, src) }
func (HostNetNS) Remove(path string) error                { return netns.Remove(path) }
func (HostNetNS) List(dir string) ([]string, error)       { return netns.List(dir) }

// FileMaker prepares and removes the files a pod's containers share
// (HostFileMaker: PrepareFiles and CleanupFiles, which mount /dev/shm).
type FileMaker interface {
	Prepare(dir string, cfg *runtimeapi.PodSandboxConfig, host HostFiles) (Files, error)
	Cleanup(dir string) error
}

// HostFileMaker is FileMaker on the node.
type HostFileMaker struct{}

func (HostFileMaker) Prepare(dir string, cfg *runtimeapi.PodSandboxConfig, host HostFiles) (Files, error) {
	return PrepareFiles(dir, cfg, host)
}
func (HostFileMaker) Cleanup(dir string) error { return CleanupFiles(dir) }

package container

import (
	"context"
	"syscall"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/oci"
	"github.com/berth-cri/berth/internal/sandbox"
	"github.com/berth-cri/berth/internal/snapshot"
	"github.com/berth-cri/berth/internal/userns"
)

// The interfaces below are the few methods the manager calls on each part
// (cmd/berthd passes the real ones): narrow enough that unit tests fake
// them, so create, rollback and recovery are tested without root.

// Images is what containers need of the image service (*image.Service):
// images are held by name while a container uses them.
type Images interface {
	Get(ref string) (image.Image, error)
	Use(ref, holder string) (image.Image, error)
	Release(id, holder string) error
	CheckPolicy(ctx context.Context, img image.Image, namespace string) error
}

// Snapshots is what containers need of the snapshot store
// (*snapshot.Store): rootfs keys are container ids.
type Snapshots interface {
	PrepareRootfs(key string, chainIDs []digest.Digest) (snapshot.Mount, error)
	MountRootfs(key string) (string, error)
	MountRootfsMapped(key string, m userns.Mappings) (string, error)
	RootfsTarget(key string) string
	RootfsUpper(key string) string
	RemoveRootfs(key string) error
	PrepareReadOnly(key string, chainIDs []digest.Digest) error
	MountReadOnly(key string) (string, error)
	LayerDiff(chainID digest.Digest) (string, error)
}

// Supervisor is what containers need of the supervisor client
// (*client.Client).
type Supervisor interface {
	CreateWhenReady(ctx context.Context, id string, req supv1.CreateRequest, ready func() error) (*supv1.State, error)
	Start(ctx context.Context, id string) (*supv1.State, error)
	Restore(ctx context.Context, id string, req supv1.CreateRequest) (*supv1.State, error)
	Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error
	State(ctx context.Context, id string) (*supv1.State, error)
	Wait(ctx context.Context, id string) (*supv1.State, error)
	WaitExit(id string, wanted func() bool, retrying func(error)) (*supv1.State, error)
	Delete(ctx context.Context, id string) error
	ReopenLog(ctx context.Context, id string) error
	UpdateResources(ctx context.Context, id string, res *specs.LinuxResources) error
	Checkpoint(ctx context.Context, id string, req supv1.CheckpointRequest) error
	Pause(ctx context.Context, id string, pause bool) error
}

// Sandboxes is what containers need of the sandbox manager
// (*sandbox.Manager): their pod, and pods made to restore a checkpoint.
type Sandboxes interface {
	Get(id string) (*sandbox.Sandbox, error)
	PodFiles(s *sandbox.Sandbox) oci.PodFiles
	Run(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (string, error)
	Stop(ctx context.Context, id string) error
	Remove(ctx context.Context, id string) error
}

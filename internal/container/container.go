// Package container is the domain side of containers: their specs, rootfs,
// supervision, exits and persisted state. The CRI edge is
// internal/server/container.
package container

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/oci"
	"github.com/berth-cri/berth/internal/store"
)

// State of a container: creating -> created -> running -> exited, and
// creating -> (rolled back, gone). created -> exited happens when a
// container never started is lost (reboot). Only created, running and
// exited are visible through the CRI. The moves are checked by one rule
// (transitions, transition.go).
type State string

const (
	StateCreating State = "creating"
	StateCreated  State = "created"
	StateRunning  State = "running"
	StateExited   State = "exited"
)

// Reasons not from the supervisor.
const (
	// ReasonUnknown is an exit no one observed: exit code 255, never 0,
	// which kubelet would read as success (CRI-CONTRACT.md).
	ReasonUnknown = "Unknown"
	// UnknownExitCode goes with ReasonUnknown.
	UnknownExitCode = 255
)

// Container is the persisted record of a container.
type Container struct {
	ID        string `json:"id"`
	SandboxID string `json:"sandbox_id"`
	// Name is name_podname_namespace_uid_attempt, unique among existing containers.
	Name string `json:"name"`
	// ConfigJSON is the ContainerConfig as kubelet sent it (protojson):
	// labels, annotations and mounts come back from it unaltered.
	ConfigJSON store.RawJSON `json:"config"`
	// ImageID is the image id (sha256:<config>), ImageRef the digested
	// reference (name@sha256:<manifest>) reported as the pod's imageID.
	ImageID  string `json:"image_id"`
	ImageRef string `json:"image_ref"`
	// ImageName is the image as the user named it (kubelet creates with the
	// id and passes the name in user_specified_image); status shows it.
	ImageName string `json:"image_name"`
	// VolumeImages are the images mounted as volumes (Mount.image).
	VolumeImages []VolumeImage `json:"volume_images,omitempty"`
	// Runtime is the handler the sandbox resolved to; RuntimeKind, Path and
	// Root how the supervisor runs it (kept, so exec does not depend on a
	// handler a reload may have changed).
	Runtime     string            `json:"runtime"`
	RuntimeKind supv1.RuntimeKind `json:"runtime_kind"`
	RuntimePath string            `json:"runtime_path,omitempty"`
	RuntimeRoot string            `json:"runtime_root"`
	State       State             `json:"state"`
	CreatedAt   int64             `json:"created_at"`
	StartedAt   int64             `json:"started_at,omitempty"`
	FinishedAt  int64             `json:"finished_at,omitempty"`
	ExitCode    int32             `json:"exit_code,omitempty"`
	Reason      string            `json:"reason,omitempty"`
	Message     string            `json:"message,omitempty"`
	Pid         int               `json:"pid,omitempty"`
	// LogPath is absolute: log_directory of the pod + log_path; "" discards.
	LogPath    string   `json:"log_path,omitempty"`
	CgroupPath string   `json:"cgroup_path,omitempty"`
	User       oci.User `json:"user"`
	StopSignal int      `json:"stop_signal"`
	// ResourcesJSON is the latest LinuxContainerResources (after updates).
	ResourcesJSON []byte `json:"resources,omitempty"`
	Delivered     bool   `json:"delivered"`
	// Restore is the unpacked checkpoint archive a container created from
	// one restores its processes from at start (restore.go); "" otherwise.
	// The supervisor knows such a container only once it started.
	Restore string `json:"restore,omitempty"`

	config    *runtimeapi.ContainerConfig
	resources *runtimeapi.LinuxContainerResources
}

// configKeys are the fields of a container's record that no longer change
// once it is created: written once, apart from its status (store.Records.Split).
var configKeys = []string{"id", "sandbox_id", "name", "config", "image_id", "image_ref", "image_name", "volume_images",
	"runtime", "runtime_kind", "runtime_path", "runtime_root", "created_at", "log_path", "cgroup_path", "user", "stop_signal", "restore"}

// Config is the container's CRI config. Callers must not modify it.
func (c *Container) Config() *runtimeapi.ContainerConfig { return c.config }

// Resources are the container's current resources, nil if none were set.
func (c *Container) Resources() *runtimeapi.LinuxContainerResources { return c.resources }

func (c *Container) decode() error {
	c.config = &runtimeapi.ContainerConfig{}
	if err := protojson.Unmarshal(c.ConfigJSON, c.config); err != nil {
		return fmt.Errorf("container %s: config: %w", c.ID, err)
	}
	c.resources = c.config.GetLinux().GetResources()
	if len(c.ResourcesJSON) > 0 {
		c.resources = &runtimeapi.LinuxContainerResources{}
		if err := protojson.Unmarshal(c.ResourcesJSON, c.resources); err != nil {
			return fmt.Errorf("container %s: resources: %w", c.ID, err)
		}
	}
	return nil
}

func (c *Container) clone() *Container {
	d := *c
	d.VolumeImages = slices.Clone(c.VolumeImages)
	return &d
}

// CRIState is the CRI state of c.
func (c *Container) CRIState() runtimeapi.ContainerState { return ToCRIState(c.State) }

// ToCRIState maps a state to the CRI's; creating has no CRI state.
func ToCRIState(s State) runtimeapi.ContainerState {
	switch s {
	case StateCreated:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	case StateRunning:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case StateExited:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return runtimeapi.ContainerState_CONTAINER_UNKNOWN
}

// containerName is the name kubelet's metadata reserves, as containerd
// builds it.
func containerName(c *runtimeapi.ContainerMetadata, pod *runtimeapi.PodSandboxMetadata) string {
	return strings.Join([]string{c.GetName(), pod.GetName(), pod.GetNamespace(), pod.GetUid(), fmt.Sprint(c.GetAttempt())}, "_")
}

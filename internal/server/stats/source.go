package stats

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroupdriver"
	"github.com/berth-cri/berth/internal/container"
	"github.com/berth-cri/berth/internal/sandbox"
)

// managerSource is the Source over berthd's container and sandbox managers.
type managerSource struct {
	containers *container.Manager
	sandboxes  *sandbox.Manager
}

// NewSource returns the Source of berthd's containers and sandboxes.
func NewSource(containers *container.Manager, sandboxes *sandbox.Manager) Source {
	return &managerSource{containers: containers, sandboxes: sandboxes}
}

func containerInfo(c *container.Container) ContainerInfo {
	cfg := c.Config()
	return ContainerInfo{
		ID: c.ID, SandboxID: c.SandboxID, Metadata: cfg.GetMetadata(),
		Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(),
		CgroupPath: cgroupDir(c.CgroupPath), RootfsKey: c.ID, Image: c.ImageName, Running: c.State == container.StateRunning,
	}
}

// cgroupDir is the directory below the hierarchy's root of a container's
// OCI cgroupsPath, which is what the cgroup reader takes: a systemd
// scope's slice:prefix:name is mapped there (cgroupdriver.Dir); a path
// that maps nowhere is passed on for the reader to refuse.
func cgroupDir(cgroupsPath string) string {
	if dir, err := cgroupdriver.Dir(cgroupsPath); err == nil {
		return dir
	}
	return cgroupsPath
}

func (s *managerSource) Containers(f *runtimeapi.ContainerStatsFilter) []ContainerInfo {
	var out []ContainerInfo
	for _, c := range s.containers.List(container.Filter{ID: f.GetId(), SandboxID: f.GetPodSandboxId(), Labels: f.GetLabelSelector()}) {
		out = append(out, containerInfo(c))
	}
	return out
}

func (s *managerSource) Container(id string) (ContainerInfo, error) {
	c, err := s.containers.Get(id)
	if err != nil {
		return ContainerInfo{}, err
	}
	return containerInfo(c), nil
}

func (s *managerSource) sandboxInfo(sb *sandbox.Sandbox) SandboxInfo {
	cfg := sb.Config()
	info := SandboxInfo{
		ID: sb.ID, Metadata: cfg.GetMetadata(), Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(),
		CgroupParent: cfg.GetLinux().GetCgroupParent(), NetNS: sb.NetNS,
	}
	if sb.State != sandbox.StateReady {
		info.NetNS = "" // stopped: its network is gone
	}
	for _, c := range s.containers.List(container.Filter{SandboxID: sb.ID}) {
		if c.SandboxID == sb.ID {
			info.Containers = append(info.Containers, containerInfo(c))
		}
	}
	return info
}

func (s *managerSource) Sandboxes(f *runtimeapi.PodSandboxStatsFilter) []SandboxInfo {
	var out []SandboxInfo
	for _, sb := range s.sandboxes.List(sandbox.Filter{ID: f.GetId(), Labels: f.GetLabelSelector()}) {
		out = append(out, s.sandboxInfo(sb))
	}
	return out
}

func (s *managerSource) Sandbox(id string) (SandboxInfo, error) {
	sb, err := s.sandboxes.Get(id)
	if err != nil {
		return SandboxInfo{}, err
	}
	return s.sandboxInfo(sb), nil
}

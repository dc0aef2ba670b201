package runtimeinfo

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroupdriver"
)

// RuntimeConfig tells kubelet (and critest) which cgroup driver berthd
// resolved at start: kubelet 1.37 takes its own from here, so the pod
// cgroups it makes (slices or directories) are the kind berthd's
// cgroupsPaths name. With CGROUPFS critest sends an empty cgroup_parent and
// berthd picks the default parent; with SYSTEMD, berth.slice.
func (s *Service) RuntimeConfig(ctx context.Context, req *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	return &runtimeapi.RuntimeConfigResponse{
		Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: criCgroupDriver(s.cgroupDriver)},
	}, nil
}

// criCgroupDriver is the CRI's name for a resolved driver.
func criCgroupDriver(d cgroupdriver.Driver) runtimeapi.CgroupDriver {
	if d == cgroupdriver.Systemd {
		return runtimeapi.CgroupDriver_SYSTEMD
	}
	return runtimeapi.CgroupDriver_CGROUPFS
}

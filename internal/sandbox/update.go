package sandbox

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/oci"
)

// UpdateResources takes kubelet's word that it resized a pod
// (UpdatePodSandboxResources, sent after an in-place resize): the pod must
// exist and the overhead and resources must be ones berth could apply to a
// container on this host. It writes no cgroup, on purpose:
//   - kubelet made the pod cgroup (cgroup_parent) and has already written
//     the new limits when it calls; it orders pod and container writes so
//     that no container limit ever exceeds its pod's, which a second writer
//     acting on the notification could only break;
//   - with the systemd driver that cgroup is kubelet's slice, a systemd
//     unit: files written behind systemd's back are reverted on the next
//     daemon-reload;
//   - a pod without cgroup_parent (crictl, critest) has no pod cgroup:
//     its sandbox and containers are siblings.
//
// The CRI contract says as much: runc-type handlers leave pod resources to
// kubelet; VM handlers and NRI plugins use them. Relaying them to NRI needs
// the plugin API's UpdatePodSandbox event, which internal/nri does not
// relay yet.
func (m *Manager) UpdateResources(ctx context.Context, id string, overhead, resources *runtimeapi.LinuxContainerResources) error {
	if _, err := m.Get(id); err != nil {
		return err
	}
	return checkPodResources(m.d.Host, overhead, resources)
}

// checkPodResources validates pod overhead and resources with the rules of
// container resources: a value a container update would refuse is refused.
func checkPodResources(h oci.Host, overhead, resources *runtimeapi.LinuxContainerResources) error {
	if _, err := oci.LinuxResources(h, overhead); err != nil {
		return fmt.Errorf("pod overhead: %w", err)
	}
	if _, err := oci.LinuxResources(h, resources); err != nil {
		return fmt.Errorf("pod resources: %w", err)
	}
	return nil
}

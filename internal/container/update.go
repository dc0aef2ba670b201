package container

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/oci"
)

// UpdateResources applies new resources to a created or running container
// and remembers them for ContainerStatus.resources. NRI plugins may change
// them first.
func (m *Manager) UpdateResources(ctx context.Context, id string, res *runtimeapi.LinuxContainerResources) error {
	return m.updateResources(ctx, id, res, true)
}

// ApplyResources is UpdateResources without relaying the update to NRI
// plugins: it carries out the updates plugins ask for themselves.
func (m *Manager) ApplyResources(ctx context.Context, id string, res *runtimeapi.LinuxContainerResources) error {
	return m.updateResources(ctx, id, res, false)
}

func (m *Manager) updateResources(ctx context.Context, id string, res *runtimeapi.LinuxContainerResources, relay bool) error {
	c, err := m.Get(id)
	if err != nil {
		return err
	}
	unlock := m.t.Lock(c.ID)
	defer unlock()
	if c = m.t.Current(c.ID); c == nil {
		return fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	if c.State != StateCreated && c.State != StateRunning {
		return fmt.Errorf("container %s is %s: %w", c.ID, c.State, errdefs.ErrFailedPrecondition)
	}
	relay = relay && m.nri != nil
	if relay {
		if res, err = m.nri.UpdateContainer(ctx, c.clone(), res); err != nil {
			return err
		}
	}
	spec, err := oci.LinuxResources(m.d.Host, res)
	if err != nil {
		return err
	}
	if err := m.d.Supervisor.UpdateResources(ctx, c.ID, spec); err != nil {
		return fmt.Errorf("update resources of container %s: %w", c.ID, err)
	}
	b, err := protojson.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode resources: %w", err)
	}
	if err := m.t.Update(c, func(c *Container) { c.ResourcesJSON, c.resources = b, res }); err != nil {
		return err
	}
	if relay {
		m.nri.PostUpdateContainer(ctx, c.clone())
	}
	return nil
}

// ReopenLog has the supervisor reopen the container's log file after
// kubelet rotated it. Only a running container has a log being written.
func (m *Manager) ReopenLog(ctx context.Context, id string) error {
	c, err := m.Get(id)
	if err != nil {
		return err
	}
	if c.State != StateRunning {
		return fmt.Errorf("container %s is not running: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	return m.d.Supervisor.ReopenLog(ctx, c.ID)
}

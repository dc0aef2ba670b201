package nri

import (
	"context"
	"fmt"
	"maps"
	"strings"

	"github.com/containerd/nri/pkg/api"
	nrigen "github.com/containerd/nri/pkg/runtime-tools/generate"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/container"
	"github.com/berth-cri/berth/internal/logctx"
)

// CreateContainer relays a container being created, with the spec built
// for it, and applies the plugins' adjustments to spec in place before it
// is written. The updates and evictions of other containers plugins ask
// for in their replies are carried out after it (carryOut). An error (a plugin's
// refusal, or an adjustment that cannot be applied) fails the create.
func (n *NRI) CreateContainer(ctx context.Context, c *container.Container, spec *specs.Spec) error {
	if !n.active() {
		return nil
	}
	sb, err := n.pods.Get(c.SandboxID)
	if err != nil {
		return fmt.Errorf("NRI CreateContainer: %w", err)
	}
	resp, err := n.r.CreateContainer(ctx, &api.CreateContainerRequest{Pod: podSandbox(sb, sb.Config()), Container: nriContainer(c, c.Config(), c.Resources(), spec)})
	if err != nil {
		return fmt.Errorf("NRI CreateContainer: %w", err)
	}
	// From here on the plugins count on the container: a create that
	// fails later is undone towards them (UndoCreateContainer).
	n.mu.Lock()
	n.creating[c.ID] = spec
	n.mu.Unlock()
	if err := n.adjust(spec, resp.GetAdjust()); err != nil {
		return fmt.Errorf("NRI CreateContainer: apply the adjustments of plugins: %w", err)
	}
	n.carryOut(ctx, resp.GetUpdate(), resp.GetEvict())
	return nil
}

// adjust applies a plugin adjustment to spec.
func (n *NRI) adjust(spec *specs.Spec, a *api.ContainerAdjustment) error {
	if a == nil {
		return nil
	}
	inject := n.cdi
	if inject == nil {
		inject = func(*specs.Spec, []string) error { return fmt.Errorf("CDI devices from NRI plugins are not supported") }
	}
	g := nrigen.SpecGenerator(specEditor{spec}, nrigen.WithCDIDeviceInjector(inject))
	return g.Adjust(a)
}

// PostCreateContainer tells plugins the container was created.
func (n *NRI) PostCreateContainer(ctx context.Context, c *container.Container) {
	spec := n.created(c.ID)
	if !n.active() {
		return
	}
	req := &api.PostCreateContainerRequest{Container: n.container(c, spec)}
	n.notify(ctx, c, "PostCreateContainer", func(pod *api.PodSandbox) error {
		req.Pod = pod
		return n.r.PostCreateContainer(ctx, req)
	})
}

// UndoCreateContainer tells the plugins that accepted a container whose
// creation then failed that it stopped and is gone.
func (n *NRI) UndoCreateContainer(ctx context.Context, c *container.Container) {
	spec := n.created(c.ID)
	if spec == nil || !n.active() {
		return
	}
	ctr := n.container(c, spec)
	ctr.State = api.ContainerState_CONTAINER_STOPPED
	n.notify(ctx, c, "StopContainer", func(pod *api.PodSandbox) error {
		_, err := n.r.StopContainer(ctx, &api.StopContainerRequest{Pod: pod, Container: ctr})
		return err
	})
	n.notify(ctx, c, "RemoveContainer", func(pod *api.PodSandbox) error {
		return n.r.RemoveContainer(ctx, &api.RemoveContainerRequest{Pod: pod, Container: ctr})
	})
}

// created forgets and returns the spec CreateContainer kept for c, if any.
func (n *NRI) created(id string) *specs.Spec {
	n.mu.Lock()
	defer n.mu.Unlock()
	spec := n.creating[id]
	delete(n.creating, id)
	return spec
}

// StartContainer relays a container about to start; an error from a
// plugin fails the start.
func (n *NRI) StartContainer(ctx context.Context, c *container.Container) error {
	if !n.active() {
		return nil
	}
	sb, err := n.pods.Get(c.SandboxID)
	if err != nil {
		return fmt.Errorf("NRI StartContainer: %w", err)
	}
	if err := n.r.StartContainer(ctx, &api.StartContainerRequest{Pod: podSandbox(sb, sb.Config()), Container: n.container(c, nil)}); err != nil {
		return fmt.Errorf("NRI StartContainer: %w", err)
	}
	return nil
}

// PostStartContainer tells plugins the container started.
func (n *NRI) PostStartContainer(ctx context.Context, c *container.Container) {
	if !n.active() {
		return
	}
	n.notify(ctx, c, "PostStartContainer", func(pod *api.PodSandbox) error {
		return n.r.PostStartContainer(ctx, &api.PostStartContainerRequest{Pod: pod, Container: n.container(c, nil)})
	})
}

// UpdateContainer relays a CRI resource update and returns the resources
// to apply: the requested ones with the plugins' changes. Updates of other
// containers in the plugins' replies are carried out; an error fails the
// update.
func (n *NRI) UpdateContainer(ctx context.Context, c *container.Container, res *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
	if !n.active() {
		return res, nil
	}
	sb, err := n.pods.Get(c.SandboxID)
	if err != nil {
		return nil, fmt.Errorf("NRI UpdateContainer: %w", err)
	}
	req := &api.UpdateContainerRequest{Pod: podSandbox(sb, sb.Config()), Container: n.container(c, nil), LinuxResources: fromCRIResources(res)}
	if req.LinuxResources == nil {
		req.LinuxResources = &api.LinuxResources{}
	}
	resp, err := n.r.UpdateContainer(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("NRI UpdateContainer: %w", err)
	}
	var others []*api.ContainerUpdate
	for _, u := range resp.GetUpdate() {
		if u == nil {
			continue // the adaptation lists the requested container as nil when no plugin changed it
		}
		if u.GetContainerId() == c.ID {
			res = mergeResources(res, u.GetLinux().GetResources())
			continue
		}
		others = append(others, u)
	}
	n.carryOut(ctx, others, resp.GetEvict())
	return res, nil
}

// PostUpdateContainer tells plugins the container's resources changed.
func (n *NRI) PostUpdateContainer(ctx context.Context, c *container.Container) {
	if !n.active() {
		return
	}
	n.notify(ctx, c, "PostUpdateContainer", func(pod *api.PodSandbox) error {
		return n.r.PostUpdateContainer(ctx, &api.PostUpdateContainerRequest{Pod: pod, Container: n.container(c, nil)})
	})
}

// StopContainer tells plugins the container stopped: it is called once per
// container, when its exit is recorded, whether it was stopped or exited
// on its own. Plugins may answer with updates of other containers (to hand
// them the freed resources), which are carried out.
func (n *NRI) StopContainer(ctx context.Context, c *container.Container) {
	if !n.active() {
		return
	}
	n.notify(ctx, c, "StopContainer", func(pod *api.PodSandbox) error {
		resp, err := n.r.StopContainer(ctx, &api.StopContainerRequest{Pod: pod, Container: n.container(c, nil)})
		if err == nil {
			n.carryOut(ctx, resp.GetUpdate(), nil)
		}
		return err
	})
}

// RemoveContainer tells plugins the container is gone.
func (n *NRI) RemoveContainer(ctx context.Context, c *container.Container) {
	if !n.active() {
		return
	}
	n.notify(ctx, c, "RemoveContainer", func(pod *api.PodSandbox) error {
		return n.r.RemoveContainer(ctx, &api.RemoveContainerRequest{Pod: pod, Container: n.container(c, nil)})
	})
}

// notify relays an event about something that already happened: a
// failure is logged, never returned.
func (n *NRI) notify(ctx context.Context, c *container.Container, event string, relay func(pod *api.PodSandbox) error) {
	log := logctx.G(ctx, n.log).WithField("container", c.ID)
	sb, err := n.pods.Get(c.SandboxID)
	if err != nil {
		log.WithError(err).Warnf("NRI %s: no sandbox", event)
		return
	}
	if err := relay(podSandbox(sb, sb.Config())); err != nil {
		log.WithError(err).Warnf("NRI %s", event)
	}
}

// container is NRI's view of c, from spec, or from c's bundle when spec is
// nil; without a bundle (a removed container) it carries what the record
// knows.
func (n *NRI) container(c *container.Container, spec *specs.Spec) *api.Container {
	if spec == nil {
		spec, _ = n.ctrs.Spec(c.ID)
	}
	return nriContainer(c, c.Config(), c.Resources(), spec)
}

// nriContainer converts a container record, its CRI config and current
// resources, and its spec (nil: unknown).
func nriContainer(c *container.Container, cfg *runtimeapi.ContainerConfig, res *runtimeapi.LinuxContainerResources, spec *specs.Spec) *api.Container {
	out := &api.Container{
		Id:            c.ID,
		PodSandboxId:  c.SandboxID,
		Name:          cfg.GetMetadata().GetName(),
		State:         nriState(c.State),
		Labels:        maps.Clone(cfg.GetLabels()),
		Annotations:   maps.Clone(cfg.GetAnnotations()),
		Pid:           uint32(c.Pid),
		CreatedAt:     c.CreatedAt,
		StartedAt:     c.StartedAt,
		FinishedAt:    c.FinishedAt,
		ExitCode:      c.ExitCode,
		StatusReason:  c.Reason,
		StatusMessage: c.Message,
		Image:         &api.Image{Name: c.ImageName, Digest: digestOf(c.ImageRef), ConfigDigest: c.ImageID},
	}
	for _, d := range cfg.GetCDIDevices() {
		out.CDIDevices = append(out.CDIDevices, &api.CDIDevice{Name: d.GetName()})
	}
	if spec == nil {
		out.Linux = &api.LinuxContainer{Resources: fromCRIResources(res)}
		return out
	}
	// The spec's annotations are what the runtime sees (allowed ones and
	// berth's own); kubelet's, from the config, win on a clash.
	for k, v := range spec.Annotations {
		if _, ok := out.Annotations[k]; !ok {
			if out.Annotations == nil {
				out.Annotations = map[string]string{}
			}
			out.Annotations[k] = v
		}
	}
	out.Mounts = api.FromOCIMounts(spec.Mounts)
	out.Hooks = api.FromOCIHooks(spec.Hooks)
	if p := spec.Process; p != nil {
		out.Args = append([]string(nil), p.Args...)
		out.Env = append([]string(nil), p.Env...)
		out.User = &api.User{Uid: p.User.UID, Gid: p.User.GID, AdditionalGids: append([]uint32(nil), p.User.AdditionalGids...)}
		for _, r := range p.Rlimits {
			out.Rlimits = append(out.Rlimits, &api.POSIXRlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft})
		}
	}
	if l := spec.Linux; l != nil {
		lx := &api.LinuxContainer{
			Namespaces:  api.FromOCILinuxNamespaces(l.Namespaces),
			Devices:     api.FromOCILinuxDevices(l.Devices),
			Resources:   api.FromOCILinuxResources(l.Resources, nil),
			CgroupsPath: l.CgroupsPath,
			Sysctl:      maps.Clone(l.Sysctl),
		}
		if p := spec.Process; p != nil {
			lx.OomScoreAdj = api.Int(p.OOMScoreAdj)
			lx.IoPriority = api.FromOCILinuxIOPriority(p.IOPriority)
			lx.Scheduler = api.FromOCILinuxScheduler(p.Scheduler)
		}
		// Resources changed by UpdateContainerResources since the spec was
		// written are the record's.
		if len(c.ResourcesJSON) > 0 {
			lx.Resources = fromCRIResources(res)
		}
		out.Linux = lx
	}
	return out
}

func nriState(s container.State) api.ContainerState {
	switch s {
	case container.StateCreating, container.StateCreated:
		return api.ContainerState_CONTAINER_CREATED
	case container.StateRunning:
		return api.ContainerState_CONTAINER_RUNNING
	case container.StateExited:
		return api.ContainerState_CONTAINER_STOPPED
	}
	return api.ContainerState_CONTAINER_UNKNOWN
}

// digestOf is the digest of a digested reference (name@sha256:…).
func digestOf(ref string) string {
	if i := strings.LastIndexByte(ref, '@'); i >= 0 {
		return ref[i+1:]
	}
	return ""
}

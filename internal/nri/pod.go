package nri

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/logctx"
	"github.com/berth-cri/berth/internal/oci"
	"github.com/berth-cri/berth/internal/sandbox"
)

// RunPodSandbox relays a pod about to become ready; an error from a plugin
// fails the RunPodSandbox.
func (n *NRI) RunPodSandbox(ctx context.Context, s *sandbox.Sandbox) error {
	if !n.active() {
		return nil
	}
	if err := n.r.RunPodSandbox(ctx, &api.RunPodSandboxRequest{Pod: podSandbox(s, s.Config())}); err != nil {
		return fmt.Errorf("NRI RunPodSandbox: %w", err)
	}
	return nil
}

// StopPodSandbox tells plugins a ready pod is being stopped (its
// containers already are).
func (n *NRI) StopPodSandbox(ctx context.Context, s *sandbox.Sandbox) {
	if !n.active() {
		return
	}
	if err := n.r.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: podSandbox(s, s.Config())}); err != nil {
		logctx.G(ctx, n.log).WithError(err).WithField("sandbox", s.ID).Warn("NRI StopPodSandbox")
	}
}

// RemovePodSandbox tells plugins a pod is gone.
func (n *NRI) RemovePodSandbox(ctx context.Context, s *sandbox.Sandbox) {
	if !n.active() {
		return
	}
	if err := n.r.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: podSandbox(s, s.Config())}); err != nil {
		logctx.G(ctx, n.log).WithError(err).WithField("sandbox", s.ID).Warn("NRI RemovePodSandbox")
	}
}

// podSandbox is NRI's view of s and its CRI config.
func podSandbox(s *sandbox.Sandbox, cfg *runtimeapi.PodSandboxConfig) *api.PodSandbox {
	md := cfg.GetMetadata()
	lx := cfg.GetLinux()
	// A pod whose pause is gone (a stop or removal, told to plugins after
	// the fact) shows its netns alone: the pause's pid proves nothing now.
	ns, _ := s.Namespaces()
	return &api.PodSandbox{
		Id:             s.ID,
		Name:           md.GetName(),
		Uid:            md.GetUid(),
		Namespace:      md.GetNamespace(),
		Labels:         maps.Clone(cfg.GetLabels()),
		Annotations:    maps.Clone(cfg.GetAnnotations()),
		RuntimeHandler: s.RuntimeHandler,
		Linux: &api.LinuxPodSandbox{
			PodOverhead:  fromCRIResources(lx.GetOverhead()),
			PodResources: fromCRIResources(lx.GetResources()),
			CgroupParent: lx.GetCgroupParent(),
			Namespaces:   podNamespaces(ns),
		},
		Pid: uint32(s.PausePID),
		Ips: slices.Clone(s.IPs),
	}
}

// podNamespaces lists the namespaces the pod's containers join; a host
// namespace has no path and is left out.
func podNamespaces(ns oci.SandboxNamespaces) []*api.LinuxNamespace {
	var out []*api.LinuxNamespace
	for _, n := range []struct {
		t    specs.LinuxNamespaceType
		path string
	}{{specs.NetworkNamespace, ns.Net}, {specs.IPCNamespace, ns.IPC}, {specs.UTSNamespace, ns.UTS}, {specs.PIDNamespace, ns.PID}} {
		if n.path != "" {
			out = append(out, &api.LinuxNamespace{Type: string(n.t), Path: n.path})
		}
	}
	return out
}

package oci

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/userns"
)

// SandboxNamespaces are the namespace paths of a running sandbox (usually
// /proc/<pause pid>/ns/*, the network one the pinned /run/berth/netns/<id>).
// A path is empty when the pod uses the host's namespace.
type SandboxNamespaces struct {
	Net, IPC, UTS, PID string
	// User is the pod's user namespace; empty for the host's.
	User string
}

func podNamespaceOptions(pod *runtimeapi.PodSandboxConfig) *runtimeapi.NamespaceOption {
	return pod.GetLinux().GetSecurityContext().GetNamespaceOptions()
}

// sandboxNamespaces: the pause process creates the pod's IPC, UTS and PID
// namespaces (each left out for the host's in NODE mode; UTS follows the
// network mode, as in kubelet) and enters the pinned network namespace, or
// creates one when netnsPath is empty. With a pod user namespace (idmap
// set) it creates that one first, so that it owns all the others: the
// caller then passes no netnsPath and pins the pause's network namespace,
// since only a network namespace the pod's user namespace owns lets the pod
// mount /sys and write its net.* sysctls.
func sandboxNamespaces(pod *runtimeapi.PodSandboxConfig, netnsPath string, idmap *userns.Mappings) []specs.LinuxNamespace {
	ns := podNamespaceOptions(pod)
	out := []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	if idmap != nil {
		out = append(out, specs.LinuxNamespace{Type: specs.UserNamespace})
	}
	if ns.GetNetwork() != runtimeapi.NamespaceMode_NODE {
		out = append(out,
			specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: netnsPath},
			specs.LinuxNamespace{Type: specs.UTSNamespace})
	}
	if ns.GetIpc() != runtimeapi.NamespaceMode_NODE {
		out = append(out, specs.LinuxNamespace{Type: specs.IPCNamespace})
	}
	if ns.GetPid() != runtimeapi.NamespaceMode_NODE {
		// POD and CONTAINER alike: the pause is pid 1 of a fresh namespace,
		// which POD-mode containers then join.
		out = append(out, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	return out
}

// containerNamespaces joins the sandbox's network, IPC and UTS namespaces
// (or the host's, following the pod's modes) and picks the PID namespace
// from the container's mode. targetPID is the PID namespace path of the
// TARGET container. A pod user namespace is joined too (the runtime joins
// the network namespace, which the host's user namespace may own, before it).
func containerNamespaces(pod *runtimeapi.PodSandboxConfig, sc *runtimeapi.LinuxContainerSecurityContext, sb SandboxNamespaces, targetPID string, newCgroupNS bool) ([]specs.LinuxNamespace, error) {
	podNS := podNamespaceOptions(pod)
	idmap, err := UserNamespace(pod)
	if err != nil {
		return nil, err
	}
	join := func(typ specs.LinuxNamespaceType, p, what string) (specs.LinuxNamespace, error) {
		if p == "" {
			return specs.LinuxNamespace{}, fmt.Errorf("the sandbox has no %s namespace path to join: %w", what, errdefs.ErrFailedPrecondition)
		}
		return specs.LinuxNamespace{Type: typ, Path: p}, nil
	}
	out := []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	if idmap != nil {
		j, err := join(specs.UserNamespace, sb.User, "user")
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	if podNS.GetNetwork() != runtimeapi.NamespaceMode_NODE {
		for _, n := range []struct {
			typ  specs.LinuxNamespaceType
			p    string
			what string
		}{{specs.NetworkNamespace, sb.Net, "network"}, {specs.UTSNamespace, sb.UTS, "uts"}} {
			j, err := join(n.typ, n.p, n.what)
			if err != nil {
				return nil, err
			}
			out = append(out, j)
		}
	}
	if podNS.GetIpc() != runtimeapi.NamespaceMode_NODE {
		j, err := join(specs.IPCNamespace, sb.IPC, "ipc")
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	ctrNS := sc.GetNamespaceOptions()
	switch ctrNS.GetPid() {
	case runtimeapi.NamespaceMode_CONTAINER:
		out = append(out, specs.LinuxNamespace{Type: specs.PIDNamespace})
	case runtimeapi.NamespaceMode_POD:
		if podNS.GetPid() != runtimeapi.NamespaceMode_NODE {
			j, err := join(specs.PIDNamespace, sb.PID, "pid")
			if err != nil {
				return nil, err
			}
			out = append(out, j)
		}
	case runtimeapi.NamespaceMode_NODE:
		// the host's
	case runtimeapi.NamespaceMode_TARGET:
		if ctrNS.GetTargetId() == "" {
			return nil, fmt.Errorf("namespace_options.pid is TARGET without target_id: %w", errdefs.ErrInvalidArgument)
		}
		if targetPID == "" {
			return nil, fmt.Errorf("namespace_options.target_id %q: no pid namespace path for the target: %w", ctrNS.GetTargetId(), errdefs.ErrFailedPrecondition)
		}
		out = append(out, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: targetPID})
	default:
		return nil, fmt.Errorf("namespace_options.pid mode %d is unknown: %w", ctrNS.GetPid(), errdefs.ErrInvalidArgument)
	}
	if newCgroupNS {
		out = append(out, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	return out, nil
}

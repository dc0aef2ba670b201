package oci

import (
	"fmt"
	"math"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/userns"
)

// UserNamespace validates the pod's user namespace request and returns its
// mappings, or nil when the pod uses the host's user namespace (mode NODE,
// or no userns_options: kubelets from before user namespaces).
//
// Mode POD (KEP-127): the pause and every container of the pod share one
// user namespace with the mappings kubelet chose. CRI-CONTRACT.md: exactly
// one uid and one gid mapping, each mapping container id 0. CONTAINER and
// TARGET are not modes of a user namespace (api.proto). The host's network,
// PID or IPC namespace cannot go with a pod user namespace: the kernel only
// lets a user namespace mount /sys, /proc and mqueue for namespaces it owns,
// so Status reports user_namespaces_host_network false and such a pod is
// refused (kubelet's validation refuses hostUsers: false with any of them).
func UserNamespace(pod *runtimeapi.PodSandboxConfig) (*userns.Mappings, error) {
	ns := podNamespaceOptions(pod)
	u := ns.GetUsernsOptions()
	if u == nil {
		return nil, nil
	}
	switch u.GetMode() {
	case runtimeapi.NamespaceMode_NODE:
		if len(u.GetUids())+len(u.GetGids()) > 0 {
			return nil, fmt.Errorf("namespace_options.userns_options: mode NODE takes no mappings: %w", errdefs.ErrInvalidArgument)
		}
		return nil, nil
	case runtimeapi.NamespaceMode_POD:
	case runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_TARGET:
		return nil, fmt.Errorf("namespace_options.userns_options: mode %s is not supported for user namespaces (only POD and NODE): %w", u.GetMode(), errdefs.ErrInvalidArgument)
	default:
		return nil, fmt.Errorf("namespace_options.userns_options: mode %d is unknown: %w", u.GetMode(), errdefs.ErrInvalidArgument)
	}
	uids, err := podIDMapping("uids", u.GetUids())
	if err != nil {
		return nil, err
	}
	gids, err := podIDMapping("gids", u.GetGids())
	if err != nil {
		return nil, err
	}
	for _, h := range []struct {
		mode runtimeapi.NamespaceMode
		what string
	}{{ns.GetNetwork(), "network"}, {ns.GetPid(), "pid"}, {ns.GetIpc(), "ipc"}} {
		if h.mode == runtimeapi.NamespaceMode_NODE {
			return nil, fmt.Errorf("namespace_options: a pod user namespace cannot be combined with the host's %s namespace: %w", h.what, errdefs.ErrInvalidArgument)
		}
	}
	return &userns.Mappings{UIDs: uids, GIDs: gids}, nil
}

// podIDMapping checks a pod's mapping list: one mapping, of container id 0
// onwards, not wrapping around the host's id space.
func podIDMapping(field string, ms []*runtimeapi.IDMapping) ([]specs.LinuxIDMapping, error) {
	field = "namespace_options.userns_options." + field
	switch {
	case len(ms) == 0:
		return nil, fmt.Errorf("%s: mode POD needs a mapping: %w", field, errdefs.ErrInvalidArgument)
	case len(ms) > 1:
		return nil, fmt.Errorf("%s: %d mappings given, only one is supported: %w", field, len(ms), errdefs.ErrInvalidArgument)
	}
	m := ms[0]
	if m.GetContainerId() != 0 {
		return nil, fmt.Errorf("%s: container id 0 is not mapped (the mapping starts at %d): %w", field, m.GetContainerId(), errdefs.ErrInvalidArgument)
	}
	if err := checkIDMapping(field, m); err != nil {
		return nil, err
	}
	return []specs.LinuxIDMapping{ociIDMapping(m)}, nil
}

func checkIDMapping(field string, m *runtimeapi.IDMapping) error {
	if m.GetLength() == 0 {
		return fmt.Errorf("%s: a mapping of length 0: %w", field, errdefs.ErrInvalidArgument)
	}
	for _, start := range []uint32{m.GetContainerId(), m.GetHostId()} {
		if uint64(start)+uint64(m.GetLength()) > math.MaxUint32 {
			return fmt.Errorf("%s: mapping %d:%d:%d runs past the last id: %w", field, m.GetContainerId(), m.GetHostId(), m.GetLength(), errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func ociIDMapping(m *runtimeapi.IDMapping) specs.LinuxIDMapping {
	return specs.LinuxIDMapping{ContainerID: m.GetContainerId(), HostID: m.GetHostId(), Size: m.GetLength()}
}

// mountIDMappings converts a CRI mount's own mappings (kubelet sends the
// pod's for every volume of a user-namespaced pod) for an id-mapped bind
// mount: a file stored as id n reads inside as container id n.
func mountIDMappings(field string, m *runtimeapi.Mount, idmap *userns.Mappings) (uids, gids []specs.LinuxIDMapping, err error) {
	if len(m.GetUidMappings()) == 0 && len(m.GetGidMappings()) == 0 {
		return nil, nil, nil
	}
	if idmap == nil {
		return nil, nil, fmt.Errorf("%s: id-mapped mounts need a pod user namespace: %w", field, errdefs.ErrInvalidArgument)
	}
	if len(m.GetUidMappings()) == 0 || len(m.GetGidMappings()) == 0 {
		return nil, nil, fmt.Errorf("%s: an id-mapped mount needs both uidMappings and gidMappings: %w", field, errdefs.ErrInvalidArgument)
	}
	for _, l := range []struct {
		what string
		ms   []*runtimeapi.IDMapping
		out  *[]specs.LinuxIDMapping
	}{{"uidMappings", m.GetUidMappings(), &uids}, {"gidMappings", m.GetGidMappings(), &gids}} {
		for _, x := range l.ms {
			if err := checkIDMapping(field+"."+l.what, x); err != nil {
				return nil, nil, err
			}
			*l.out = append(*l.out, ociIDMapping(x))
		}
	}
	return uids, gids, nil
}

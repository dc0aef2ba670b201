package oci

import (
	"errors"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// podUserns is a mode POD request with one mapping for uids and gids alike.
func podUserns(containerID, hostID, length uint32) *runtimeapi.UserNamespace {
	m := []*runtimeapi.IDMapping{{ContainerId: containerID, HostId: hostID, Length: length}}
	return &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}
}

func withUserns(pod *runtimeapi.PodSandboxConfig, u *runtimeapi.UserNamespace) *runtimeapi.PodSandboxConfig {
	pod.Linux.SecurityContext.NamespaceOptions.UsernsOptions = u
	return pod
}

func TestUserNamespace(t *testing.T) {
	two := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 1000, Length: 100000}, {ContainerId: 0, HostId: 2000, Length: 100000}}
	tests := []struct {
		name   string
		ns     *runtimeapi.NamespaceOption
		want   []specs.LinuxIDMapping // nil = the host's user namespace
		err    error
		substr string
	}{
		{"no userns_options: the host's", &runtimeapi.NamespaceOption{}, nil, nil, ""},
		{"NODE", &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}}, nil, nil, ""},
		{"POD", &runtimeapi.NamespaceOption{UsernsOptions: podUserns(0, 200000, 65536)},
			[]specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}, nil, ""},
		{"POD, critest's mapping", &runtimeapi.NamespaceOption{UsernsOptions: podUserns(0, 1000, 100000)},
			[]specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 100000}}, nil, ""},
		// CRI-CONTRACT.md, User namespaces.
		{"more than one mapping", &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: two, Gids: two}},
			nil, errdefs.ErrInvalidArgument, "only one"},
		{"container id 0 unmapped", &runtimeapi.NamespaceOption{UsernsOptions: podUserns(1, 1000, 100000)},
			nil, errdefs.ErrInvalidArgument, "container id 0 is not mapped"},
		{"CONTAINER", &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}},
			nil, errdefs.ErrInvalidArgument, "CONTAINER"},
		{"TARGET", &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_TARGET}},
			nil, errdefs.ErrInvalidArgument, "TARGET"},
		{"unknown mode", &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: 9}}, nil, errdefs.ErrInvalidArgument, "unknown"},
		{"POD without mappings", &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}},
			nil, errdefs.ErrInvalidArgument, "uids"},
		{"POD without gid mappings", &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: podUserns(0, 1000, 10).Uids}},
			nil, errdefs.ErrInvalidArgument, "gids"},
		{"NODE with mappings", &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE, Uids: podUserns(0, 1000, 10).Uids}},
			nil, errdefs.ErrInvalidArgument, "NODE"},
		{"empty mapping", &runtimeapi.NamespaceOption{UsernsOptions: podUserns(0, 1000, 0)}, nil, errdefs.ErrInvalidArgument, "length 0"},
		{"mapping past the last host id", &runtimeapi.NamespaceOption{UsernsOptions: podUserns(0, 4294967295-10, 65536)}, nil, errdefs.ErrInvalidArgument, "past the last id"},
		{"with host network", &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, UsernsOptions: podUserns(0, 200000, 65536)},
			nil, errdefs.ErrInvalidArgument, "network"},
		{"with host pid", &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE, UsernsOptions: podUserns(0, 200000, 65536)},
			nil, errdefs.ErrInvalidArgument, "pid"},
		{"with host ipc", &runtimeapi.NamespaceOption{Ipc: runtimeapi.NamespaceMode_NODE, UsernsOptions: podUserns(0, 200000, 65536)},
			nil, errdefs.ErrInvalidArgument, "ipc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := testPod()
			pod.Linux.SecurityContext.NamespaceOptions = tt.ns
			got, err := UserNamespace(pod)
			checkErr(t, err, tt.err, tt.substr)
			if err != nil {
				return
			}
			if tt.want == nil {
				if got != nil {
					t.Fatalf("mappings = %+v, want the host's user namespace", got)
				}
				return
			}
			if got == nil || !slices.Equal(got.UIDs, tt.want) || !slices.Equal(got.GIDs, tt.want) {
				t.Fatalf("mappings = %+v, want uids and gids %+v", got, tt.want)
			}
		})
	}
}

func TestUsernsSandboxSpec(t *testing.T) {
	in := testSandboxInput(t)
	in.Config = withUserns(in.Config, podUserns(0, 200000, 65536))
	in.NetNSPath = "" // the pause creates the network namespace its user namespace owns
	in.PodFiles.Shm = "/run/berth/sandboxes/s1/shm"
	spec, err := SandboxSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
	if !slices.Equal(spec.Linux.UIDMappings, want) || !slices.Equal(spec.Linux.GIDMappings, want) {
		t.Errorf("uid/gid mappings %+v %+v", spec.Linux.UIDMappings, spec.Linux.GIDMappings)
	}
	ns := nsTypes(spec.Linux.Namespaces)
	if p, ok := ns["user"]; !ok || p != "" {
		t.Errorf("no new user namespace: %+v", spec.Linux.Namespaces)
	}
	if p, ok := ns["network"]; !ok || p != "" {
		t.Errorf("network namespace %q, want a new one", p)
	}
	shm := destinations(spec.Mounts)["/dev/shm"]
	if shm.Source != in.PodFiles.Shm || !slices.Equal(shm.UIDMappings, want) || !slices.Equal(shm.GIDMappings, want) {
		t.Errorf("/dev/shm not id-mapped: %+v", shm)
	}

	in.Config = withUserns(testSandboxInput(t).Config, &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER})
	if _, err := SandboxSpec(in); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("CONTAINER mode: err = %v, want InvalidArgument", err)
	}
}

func TestUsernsContainerMounts(t *testing.T) {
	hostDir := t.TempDir()
	podMap := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
	kubeletMap := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 200000, Length: 65536}}
	tests := []struct {
		name   string
		mounts []*runtimeapi.Mount
		mapped map[string]bool // destination -> id-mapped with podMap
		err    error
		substr string
	}{
		{"pod files are id-mapped; a volume as kubelet asks",
			[]*runtimeapi.Mount{
				{ContainerPath: "/data", HostPath: hostDir, UidMappings: kubeletMap, GidMappings: kubeletMap},
				{ContainerPath: "/plain", HostPath: hostDir},
			},
			map[string]bool{"/etc/hosts": true, "/etc/resolv.conf": true, "/etc/hostname": true, "/dev/shm": true, "/data": true, "/plain": false, "/proc": false}, nil, ""},
		{"uid mappings without gid mappings",
			[]*runtimeapi.Mount{{ContainerPath: "/data", HostPath: hostDir, UidMappings: kubeletMap}}, nil, errdefs.ErrInvalidArgument, "both"},
		{"an empty mount mapping",
			[]*runtimeapi.Mount{{ContainerPath: "/data", HostPath: hostDir, UidMappings: kubeletMap, GidMappings: []*runtimeapi.IDMapping{{HostId: 1}}}},
			nil, errdefs.ErrInvalidArgument, "gidMappings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testInput(t)
			in.SandboxConfig = withUserns(in.SandboxConfig, podUserns(0, 200000, 65536))
			in.Namespaces.User = "/proc/1234/ns/user"
			in.Config.Mounts = tt.mounts
			res, err := ContainerSpec(in)
			checkErr(t, err, tt.err, tt.substr)
			if err != nil {
				return
			}
			if ns := nsTypes(res.Spec.Linux.Namespaces); ns["user"] != "/proc/1234/ns/user" {
				t.Errorf("user namespace not joined: %+v", res.Spec.Linux.Namespaces)
			}
			if len(res.Spec.Linux.UIDMappings) != 0 {
				t.Errorf("mappings next to a userns path: %+v", res.Spec.Linux.UIDMappings)
			}
			got := destinations(res.Spec.Mounts)
			for dst, mapped := range tt.mapped {
				m, ok := got[dst]
				if !ok {
					t.Fatalf("no mount at %s", dst)
				}
				if is := slices.Equal(m.UIDMappings, podMap) && slices.Equal(m.GIDMappings, podMap); is != mapped {
					t.Errorf("%s: id-mapped = %v, want %v (%+v)", dst, is, mapped, m)
				}
			}
		})
	}
}

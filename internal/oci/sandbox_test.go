package oci

import (
	"slices"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

func testSandboxInput(t testing.TB) SandboxInput {
	return SandboxInput{
		ID:        "s1",
		Config:    testPod(),
		Image:     ocispec.ImageConfig{Entrypoint: []string{"/pause"}, User: "65535:65535"},
		Rootfs:    t.TempDir(),
		NetNSPath: "/run/berth/netns/s1",
		Host:      fakeHost(),
	}
}

func nsTypes(ns []specs.LinuxNamespace) map[specs.LinuxNamespaceType]string {
	out := map[specs.LinuxNamespaceType]string{}
	for _, n := range ns {
		out[n.Type] = n.Path
	}
	return out
}

func TestSandboxSpec(t *testing.T) {
	sbCtx := func(in *SandboxInput) *runtimeapi.LinuxSandboxSecurityContext { return in.Config.Linux.SecurityContext }
	tests := []struct {
		name   string
		mod    func(*SandboxInput)
		check  func(*testing.T, *specs.Spec)
		err    error
		substr string
	}{
		{"ordinary pod", nil, func(t *testing.T, s *specs.Spec) {
			if !slices.Equal(s.Process.Args, []string{"/pause"}) || s.Hostname != "web-0" {
				t.Errorf("args %q hostname %q", s.Process.Args, s.Hostname)
			}
			ns := nsTypes(s.Linux.Namespaces)
			if len(ns) != 5 || ns["network"] != "/run/berth/netns/s1" || ns["pid"] != "" || ns["ipc"] != "" || ns["uts"] != "" {
				t.Errorf("namespaces %+v", s.Linux.Namespaces)
			}
			if s.Process.User.UID != 65535 || s.Process.User.GID != 65535 {
				t.Errorf("user %+v", s.Process.User)
			}
			if *s.Process.OOMScoreAdj != 0 { // -998 clamped to the fake host's 0
				t.Errorf("oom %d", *s.Process.OOMScoreAdj)
			}
			if s.Linux.CgroupsPath != "/kubepods/besteffort/poduid-1/s1" || s.Linux.Resources.Memory != nil || *s.Linux.Resources.CPU.Shares != 2 {
				t.Errorf("cgroup %q resources %+v", s.Linux.CgroupsPath, s.Linux.Resources)
			}
			if !s.Process.NoNewPrivileges || len(s.Process.Capabilities.Bounding) != 0 {
				t.Errorf("pause not minimal: %+v", s.Process)
			}
			if s.Annotations[AnnotationContainerType] != ContainerTypeSandbox || s.Annotations[AnnotationSandboxID] != "s1" {
				t.Errorf("annotations %v", s.Annotations)
			}
			if _, ok := destinations(s.Mounts)["/dev/shm"]; ok {
				t.Error("shm mounted without a pod shm")
			}
		}, nil, ""},
		{"host network: no netns, no uts, no hostname", func(in *SandboxInput) {
			sbCtx(in).NamespaceOptions = &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}
			in.Config.Hostname = ""
		}, func(t *testing.T, s *specs.Spec) {
			ns := nsTypes(s.Linux.Namespaces)
			if _, ok := ns["network"]; ok || s.Hostname != "" {
				t.Errorf("namespaces %+v hostname %q", s.Linux.Namespaces, s.Hostname)
			}
			if _, ok := ns["uts"]; ok {
				t.Error("host network pod got its own UTS namespace")
			}
		}, nil, ""},
		{"host pid and ipc", func(in *SandboxInput) {
			sbCtx(in).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE}
		}, func(t *testing.T, s *specs.Spec) {
			ns := nsTypes(s.Linux.Namespaces)
			if _, ok := ns["pid"]; ok {
				t.Error("pid namespace with host pid")
			}
			if _, ok := ns["ipc"]; ok {
				t.Error("ipc namespace with host ipc")
			}
		}, nil, ""},
		{"pod shm mounted", func(in *SandboxInput) { in.PodFiles.Shm = "/run/berth/s1/shm" }, func(t *testing.T, s *specs.Spec) {
			if destinations(s.Mounts)["/dev/shm"].Source != "/run/berth/s1/shm" {
				t.Errorf("mounts %+v", s.Mounts)
			}
		}, nil, ""},
		{"sysctls", func(in *SandboxInput) {
			in.Config.Linux.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shm_rmid_forced": "1"}
		}, func(t *testing.T, s *specs.Spec) {
			if len(s.Linux.Sysctl) != 2 {
				t.Errorf("sysctl %v", s.Linux.Sysctl)
			}
		}, nil, ""},
		{"net sysctl with host network", func(in *SandboxInput) {
			sbCtx(in).NamespaceOptions = &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}
			in.Config.Linux.Sysctls = map[string]string{"net.core.somaxconn": "1024"}
		}, nil, errdefs.ErrInvalidArgument, "net.core.somaxconn"},
		{"unsafe sysctl", func(in *SandboxInput) { in.Config.Linux.Sysctls = map[string]string{"kernel.panic": "1"} }, nil, errdefs.ErrInvalidArgument, "kernel.panic"},
		{"run_as_user and group", func(in *SandboxInput) {
			sbCtx(in).RunAsUser, sbCtx(in).RunAsGroup, sbCtx(in).SupplementalGroups = i64(1000), i64(2000), []int64{3000}
		}, func(t *testing.T, s *specs.Spec) {
			if u := s.Process.User; u.UID != 1000 || u.GID != 2000 || !slices.Equal(u.AdditionalGids, []uint32{2000, 3000}) {
				t.Errorf("user %+v", u)
			}
		}, nil, ""},
		{"run_as_group alone", func(in *SandboxInput) { sbCtx(in).RunAsGroup = i64(1) }, nil, errdefs.ErrInvalidArgument, "run_as_group"},
		{"readonly rootfs and seccomp", func(in *SandboxInput) {
			sbCtx(in).ReadonlyRootfs = true
			sbCtx(in).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
		}, func(t *testing.T, s *specs.Spec) {
			if !s.Root.Readonly || s.Linux.Seccomp == nil || allowed(s.Linux.Seccomp, "mount") {
				t.Errorf("root %+v seccomp %v", s.Root, s.Linux.Seccomp != nil)
			}
		}, nil, ""},
		{"pod resources not applied", func(in *SandboxInput) {
			in.Config.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 30}
			in.Config.Linux.Overhead = &runtimeapi.LinuxContainerResources{CpuShares: 100}
		}, func(t *testing.T, s *specs.Spec) {
			if s.Linux.Resources.Memory != nil || *s.Linux.Resources.CPU.Shares != 2 {
				t.Errorf("resources %+v", s.Linux.Resources)
			}
		}, nil, ""},
		{"empty cgroup parent", func(in *SandboxInput) { in.Config.Linux.CgroupParent = "" }, func(t *testing.T, s *specs.Spec) {
			if s.Linux.CgroupsPath != "/berth/s1" {
				t.Errorf("cgroups path %q", s.Linux.CgroupsPath)
			}
		}, nil, ""},
		{"no pause command", func(in *SandboxInput) { in.Image = ocispec.ImageConfig{} }, nil, errdefs.ErrInvalidArgument, "entrypoint"},
		{"AppArmor localhost refused", func(in *SandboxInput) {
			sbCtx(in).Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "p"}
		}, nil, errdefs.ErrInvalidArgument, "AppArmor is not enabled"},
		{"hostname too long", func(in *SandboxInput) { in.Config.Hostname = string(make([]byte, 65)) }, nil, errdefs.ErrInvalidArgument, "hostname"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testSandboxInput(t)
			if tt.mod != nil {
				tt.mod(&in)
			}
			s, err := SandboxSpec(in)
			checkErr(t, err, tt.err, tt.substr)
			if err == nil && tt.check != nil {
				tt.check(t, s)
			}
		})
	}
}

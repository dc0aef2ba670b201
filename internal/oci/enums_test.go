package oci

import (
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// TestUnknownEnumsRefused pins issue 9: an enum value outside the CRI is
// InvalidArgument naming the field, not the zero value's behaviour (a pod
// network for NamespaceMode 99, Merge for SupplementalGroupsPolicy 99, no
// AppArmor for ProfileType 99).
func TestUnknownEnumsRefused(t *testing.T) {
	const bad = 99
	pod := []struct {
		field  string
		mutate func(*runtimeapi.PodSandboxConfig)
	}{
		{"namespace_options.network", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.Network = bad
		}},
		{"namespace_options.ipc", func(c *runtimeapi.PodSandboxConfig) { c.Linux.SecurityContext.NamespaceOptions.Ipc = bad }},
		{"namespace_options.pid", func(c *runtimeapi.PodSandboxConfig) { c.Linux.SecurityContext.NamespaceOptions.Pid = bad }},
		{"userns_options.mode", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{Mode: bad}
		}},
		{"supplemental_groups_policy", func(c *runtimeapi.PodSandboxConfig) { c.Linux.SecurityContext.SupplementalGroupsPolicy = bad }},
		{"seccomp.profile_type", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: bad}
		}},
		{"apparmor.profile_type", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.Apparmor = &runtimeapi.SecurityProfile{ProfileType: bad}
		}},
		{"port_mappings[1].protocol", func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 80}, {ContainerPort: 81, Protocol: bad}}
		}},
	}
	for _, tc := range pod {
		t.Run("sandbox "+tc.field, func(t *testing.T) {
			in := testSandboxInput(t)
			tc.mutate(in.Config)
			_, err := SandboxSpec(in)
			checkErr(t, err, errdefs.ErrInvalidArgument, tc.field+" 99")
		})
	}
	ctr := []struct {
		field  string
		mutate func(*ContainerInput)
	}{
		{"namespace_options.network", func(in *ContainerInput) {
			secCtx(in).NamespaceOptions = &runtimeapi.NamespaceOption{Network: bad}
		}},
		{"namespace_options.pid", func(in *ContainerInput) { secCtx(in).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: bad} }},
		{"supplemental_groups_policy", func(in *ContainerInput) { secCtx(in).SupplementalGroupsPolicy = bad }},
		{"seccomp.profile_type", func(in *ContainerInput) { secCtx(in).Seccomp = &runtimeapi.SecurityProfile{ProfileType: bad} }},
		{"apparmor.profile_type", func(in *ContainerInput) { secCtx(in).Apparmor = &runtimeapi.SecurityProfile{ProfileType: bad} }},
		{"stop_signal", func(in *ContainerInput) { in.Config.StopSignal = bad }},
		{"mounts[0].propagation", func(in *ContainerInput) {
			in.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/x", HostPath: "/tmp", Propagation: bad}}
		}},
	}
	for _, tc := range ctr {
		t.Run("container "+tc.field, func(t *testing.T) {
			in := testInput(t)
			tc.mutate(&in)
			_, err := ContainerSpec(in)
			checkErr(t, err, errdefs.ErrInvalidArgument, tc.field+" 99")
		})
	}
}

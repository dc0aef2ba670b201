package oci

import (
	"fmt"

	"google.golang.org/protobuf/reflect/protoreflect"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// An enum value the CRI does not define (a newer kubelet's, or a hostile
// client's) is refused: the switches below would otherwise read it as the
// zero value or the "else" branch — a pod network for NamespaceMode 99, a
// Merge policy for SupplementalGroupsPolicy 99, no AppArmor profile for
// ProfileType 99 — and run with less isolation than was asked for.

type enumField struct {
	name string
	v    protoreflect.Enum
}

func checkEnums(fields ...enumField) error {
	for _, f := range fields {
		if f.v.Descriptor().Values().ByNumber(f.v.Number()) == nil {
			return fmt.Errorf("%s %d is not a known %s value: %w", f.name, f.v.Number(), f.v.Descriptor().Name(), errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func namespaceEnums(prefix string, ns *runtimeapi.NamespaceOption) []enumField {
	return []enumField{
		{prefix + "namespace_options.network", ns.GetNetwork()},
		{prefix + "namespace_options.pid", ns.GetPid()},
		{prefix + "namespace_options.ipc", ns.GetIpc()},
		{prefix + "namespace_options.userns_options.mode", ns.GetUsernsOptions().GetMode()},
	}
}

// checkSandboxEnums checks every enum of a sandbox config.
func checkSandboxEnums(cfg *runtimeapi.PodSandboxConfig) error {
	sc := cfg.GetLinux().GetSecurityContext()
	fields := append(namespaceEnums("linux.security_context.", sc.GetNamespaceOptions()),
		enumField{"linux.security_context.supplemental_groups_policy", sc.GetSupplementalGroupsPolicy()},
		enumField{"linux.security_context.seccomp.profile_type", sc.GetSeccomp().GetProfileType()},
		enumField{"linux.security_context.apparmor.profile_type", sc.GetApparmor().GetProfileType()},
	)
	for i, p := range cfg.GetPortMappings() {
		fields = append(fields, enumField{fmt.Sprintf("port_mappings[%d].protocol", i), p.GetProtocol()})
	}
	return checkEnums(fields...)
}

// checkContainerEnums checks the enums of a container config that
// ContainerSpec does not already switch on exhaustively.
func checkContainerEnums(cfg *runtimeapi.ContainerConfig) error {
	sc := cfg.GetLinux().GetSecurityContext()
	fields := append(namespaceEnums("linux.security_context.", sc.GetNamespaceOptions()),
		enumField{"linux.security_context.supplemental_groups_policy", sc.GetSupplementalGroupsPolicy()},
		enumField{"linux.security_context.seccomp.profile_type", sc.GetSeccomp().GetProfileType()},
		enumField{"linux.security_context.apparmor.profile_type", sc.GetApparmor().GetProfileType()},
		enumField{"stop_signal", cfg.GetStopSignal()},
	)
	for i, m := range cfg.GetMounts() {
		fields = append(fields, enumField{fmt.Sprintf("mounts[%d].propagation", i), m.GetPropagation()})
	}
	return checkEnums(fields...)
}

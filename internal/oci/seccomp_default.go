package oci

import (
	"fmt"

	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The RuntimeDefault seccomp profile is moby's default profile
// (github.com/moby/profiles/seccomp): the profile Docker, containerd and
// CRI-O mean by that name, maintained as kernels add system calls and
// address families. It was hand-written here once and drifted (it allowed
// AF_VSOCK sockets and lacked uretprobe, mseal and statmount, issue 17); now
// only its conditions are evaluated here, by the same resolver as Localhost
// profiles, exactly as moby applies them:
//   - a rule with includes.caps applies only when the process's bounding
//     set holds every listed capability, one with excludes.caps only when
//     it holds none of them (so adding CAP_SYS_ADMIN to a pod allows
//     mount(2), and clone loses its namespace-flag filter);
//   - arches conditions match the architecture berthd was built for
//     (libseccomp's names: amd64, x86, arm64...), which is the host's;
//   - minKernel conditions match the Host's kernel release.
//
// Deliberate differences from moby: none. Should one ever be needed, make it
// in DefaultSeccompProfile after the conversion, with its reason beside it,
// and make TestDefaultProfileIsMobys expect exactly it: that test fails on
// any other divergence. A new module version brings moby's changes along.

// DefaultSeccompProfile returns the RuntimeDefault profile for a process
// holding caps (its bounding set) on host h. It fails only when h does not
// say which kernel it runs (a Host built without ProbeHost).
func DefaultSeccompProfile(h Host, caps []string) (*specs.LinuxSeccomp, error) {
	p, err := resolveProfile(mobyseccomp.DefaultProfile(), profileConditions{caps: caps, arch: seccompArchName(), kernel: h.KernelRelease})
	if err != nil {
		return nil, fmt.Errorf("RuntimeDefault seccomp profile: %w", err)
	}
	return p, nil
}

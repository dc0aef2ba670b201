package oci

import (
	"fmt"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// capNames indexes capability names by their bit number (linux/capability.h).
var capNames = [...]string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
	"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
	"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// DefaultCaps is the capability set of an ordinary container, the same as
// containerd's and Docker's.
var DefaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// normalizeCap turns "net_admin", "NET_ADMIN" or "CAP_NET_ADMIN" into
// "CAP_NET_ADMIN"; "ALL" stays "ALL". Unknown names are an error.
func normalizeCap(field, name string) (string, error) {
	up := strings.ToUpper(strings.TrimSpace(name))
	if up == "ALL" {
		return up, nil
	}
	if !strings.HasPrefix(up, "CAP_") {
		up = "CAP_" + up
	}
	if !slices.Contains(capNames[:], up) {
		return "", fmt.Errorf("%s: unknown capability %q: %w", field, name, errdefs.ErrInvalidArgument)
	}
	return up, nil
}

// capabilities computes the process capability sets.
//
// Semantics (api.proto, Capability): drop removes from every set and is
// applied first, so "drop ALL, add X" leaves X; add puts a capability in
// bounding, permitted and effective; add_ambient also makes it ambient (and
// inheritable, which ambient requires). Inheritable holds only ambient
// capabilities: a populated inheritable set lets file capabilities escalate
// (CVE-2022-24769), which is why containerd and Docker stopped setting it.
//
// For a non-root user, effective and permitted keep only the ambient
// capabilities, as the kernel's execve would leave them anyway (Docker and
// containerd clear them the same way); the bounding set still limits what
// setuid/file-capability binaries can gain.
//
// Every set is intersected with the host's bounding set: runc cannot give a
// capability berthd does not hold.
func capabilities(h Host, sc *runtimeapi.LinuxContainerSecurityContext, uid uint32) (*specs.LinuxCapabilities, error) {
	c := sc.GetCapabilities()
	drops, err := capList("capabilities.drop_capabilities", c.GetDropCapabilities(), h)
	if err != nil {
		return nil, err
	}
	adds, err := capList("capabilities.add_capabilities", c.GetAddCapabilities(), h)
	if err != nil {
		return nil, err
	}
	ambient, err := capList("capabilities.add_ambient_capabilities", c.GetAddAmbientCapabilities(), h)
	if err != nil {
		return nil, err
	}
	var base []string
	if sc.GetPrivileged() {
		// api.proto: privileged means all capabilities; add/drop may be ignored.
		base = slices.Clone(h.BoundingCaps)
	} else {
		dropped := func(c string) bool { return slices.Contains(drops, c) }
		base = slices.DeleteFunc(slices.Clone(DefaultCaps), dropped)
		base = appendUnique(base, adds...)
		// Ambient capabilities are added too; like adds, they apply after
		// the drops.
		base = appendUnique(base, ambient...)
	}
	base = intersect(base, h.BoundingCaps)
	ambient = intersect(ambient, h.BoundingCaps)

	out := &specs.LinuxCapabilities{
		Bounding:    base,
		Effective:   slices.Clone(base),
		Permitted:   slices.Clone(base),
		Inheritable: slices.Clone(ambient),
		Ambient:     slices.Clone(ambient),
	}
	if uid != 0 {
		out.Effective = slices.Clone(ambient)
		out.Permitted = slices.Clone(ambient)
	}
	return out, nil
}

// capList normalises a CRI list; "ALL" expands to the host bounding set.
func capList(field string, names []string, h Host) ([]string, error) {
	var out []string
	for _, n := range names {
		c, err := normalizeCap(field, n)
		if err != nil {
			return nil, err
		}
		if c == "ALL" {
			out = appendUnique(out, h.BoundingCaps...)
			continue
		}
		out = appendUnique(out, c)
	}
	return out, nil
}

func appendUnique(list []string, add ...string) []string {
	for _, a := range add {
		if !slices.Contains(list, a) {
			list = append(list, a)
		}
	}
	return list
}

// intersect keeps the elements of list found in allowed, in list's order.
// The result is never nil, so the spec says "none" rather than "unset".
func intersect(list, allowed []string) []string {
	out := []string{}
	for _, c := range list {
		if slices.Contains(allowed, c) {
			out = append(out, c)
		}
	}
	return out
}

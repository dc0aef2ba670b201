// Package cgroupdriver decides who owns container cgroups and names them.
//
// With the cgroupfs driver berth makes plain directories (<parent>/<id>);
// with the systemd driver every sandbox and container is a transient scope
// unit, berth-<id>.scope, that libcontainer asks systemd for, in the pod's
// slice. A node whose PID 1 is systemd wants the second: kubelet's
// cgroupDriver must match the runtime's, and systemd owns the cgroup tree
// (a daemon-reload re-applies unit properties over whatever was written
// behind its back).
//
// The OCI cgroupsPath carries the choice, as runc reads it: an absolute
// path is a cgroupfs directory, "slice:prefix:name" a systemd scope.
// Both berthd and the supervisor import this package, so it stays free of
// cgroup managers and D-Bus.
package cgroupdriver

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Driver is a resolved cgroup driver, or a configured one (Auto).
type Driver string

// The drivers; Auto is a config value only, never a resolved driver.
const (
	Auto     Driver = "auto"
	Systemd  Driver = "systemd"
	Cgroupfs Driver = "cgroupfs"
)

// Host is what resolving the driver needs to know about the node.
type Host struct {
	// SystemdPID1: systemd runs as init (/run/systemd/system exists, the
	// test sd_booted(3) makes).
	SystemdPID1 bool
	// CgroupV2: /sys/fs/cgroup is the unified hierarchy alone.
	CgroupV2 bool
}

// Probe reads the node's facts.
func Probe() Host {
	var h Host
	if fi, err := os.Lstat("/run/systemd/system"); err == nil && fi.IsDir() {
		h.SystemdPID1 = true
	}
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		h.CgroupV2 = true
	}
	return h
}

// ErrUnsupported: the configured driver cannot work on this node.
var ErrUnsupported = errors.New("cgroup driver not supported on this node")

// Resolve turns the configured driver ("" means Auto) into the one to use.
// Auto picks systemd where systemd is init on a pure cgroup v2 node (every
// current distribution's default, and what kubeadm configures kubelet
// for), cgroupfs elsewhere. An explicit systemd on another node is refused
// rather than half working: berth's systemd support is for cgroup v2 only,
// which kubelet requires from 1.35 on anyway.
func Resolve(configured string, h Host) (Driver, error) {
	switch Driver(configured) {
	case Auto, "":
		if h.SystemdPID1 && h.CgroupV2 {
			return Systemd, nil
		}
		return Cgroupfs, nil
	case Systemd:
		if !h.SystemdPID1 {
			return "", fmt.Errorf("cgroup_driver %q: systemd is not running as init (no /run/systemd/system): %w", configured, ErrUnsupported)
		}
		if !h.CgroupV2 {
			return "", fmt.Errorf("cgroup_driver %q: /sys/fs/cgroup is not a pure cgroup v2 hierarchy: %w", configured, ErrUnsupported)
		}
		return Systemd, nil
	case Cgroupfs:
		return Cgroupfs, nil
	}
	return "", fmt.Errorf("cgroup_driver %q is not auto, systemd or cgroupfs", configured)
}

// DefaultSlice holds, with the systemd driver, the scopes of pods that
// name no cgroup parent (crictl, critest): a slice of berth's own rather
// than system.slice, where libcontainer would put them, among the
// node's services.
const DefaultSlice = "berth.slice"

// ScopePrefix is the prefix of every scope berth asks for: a sandbox or
// container <id> is the unit berth-<id>.scope.
const ScopePrefix = "berth"

// SupervisorScope is the supervisor's own unit with the systemd driver, in
// system.slice: outside berthd's service (a restart of berthd stops what
// runs in its cgroup) and outside every pod slice.
const SupervisorScope = "berth-supervisor.scope"

const sliceSuffix = ".slice"

// ExpandSlice returns the cgroup path of a slice unit below the hierarchy's
// root: systemd.slice(5) nests a slice in the one its name minus the last
// dash-separated part names, so "a-b.slice" is "/a.slice/a-b.slice", and
// the root slice "-.slice" is "/". Kept here rather than taken from
// opencontainers/cgroups/systemd so that berthd links no cgroup manager;
// the test holds it to that package's result.
func ExpandSlice(name string) (string, error) {
	stem, ok := strings.CutSuffix(name, sliceSuffix)
	if !ok || stem == "" || strings.Contains(name, "/") {
		return "", fmt.Errorf("%q is not a slice unit name (like kubepods-burstable.slice)", name)
	}
	if stem == "-" {
		return "/", nil
	}
	var b strings.Builder
	parts := strings.Split(stem, "-")
	for i, p := range parts {
		if p == "" {
			return "", fmt.Errorf("%q is not a slice unit name: empty part between dashes", name)
		}
		b.WriteString("/")
		b.WriteString(strings.Join(parts[:i+1], "-"))
		b.WriteString(sliceSuffix)
	}
	return b.String(), nil
}

// Slice returns the slice unit a CRI cgroup_parent names for the systemd
// driver: "" is DefaultSlice; a slice unit name is taken as it is; a path
// (what kubelet's systemd cgroup manager sends:
// "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice")
// must end in a slice and be exactly that slice's expansion, or the
// scope would land somewhere else than the path the caller reads stats
// from. Anything else is refused: a cgroupfs directory cannot hold a
// systemd scope.
func Slice(parent string) (string, error) {
	if parent == "" {
		return DefaultSlice, nil
	}
	if strings.ContainsRune(parent, 0) {
		return "", fmt.Errorf("%q contains a NUL byte", parent)
	}
	if !strings.HasPrefix(parent, "/") {
		if _, err := ExpandSlice(parent); err != nil {
			return "", err
		}
		return parent, nil
	}
	name := path.Base(parent)
	want, err := ExpandSlice(name)
	if err != nil {
		return "", fmt.Errorf("%q does not end in a systemd slice (with the systemd cgroup driver, a parent is a slice like /kubepods.slice/kubepods-besteffort.slice): %w", parent, err)
	}
	if path.Clean(parent) != want {
		return "", fmt.Errorf("%q is not where systemd puts slice %s (%s)", parent, name, want)
	}
	return name, nil
}

// ScopePath is the systemd driver's OCI cgroupsPath of sandbox or
// container id below parent: "<slice>:berth:<id>", runc's
// slice:prefix:name form, which libcontainer turns into the transient
// unit berth-<id>.scope in that slice.
func ScopePath(parent, id string) (string, error) {
	slice, err := Slice(parent)
	if err != nil {
		return "", err
	}
	if id == "" || strings.ContainsAny(id, ":/\x00") {
		return "", fmt.Errorf("id %q cannot name a scope", id)
	}
	return slice + ":" + ScopePrefix + ":" + id, nil
}

// IsScopePath reports whether an OCI cgroupsPath is in systemd's
// slice:prefix:name form rather than a cgroupfs path.
func IsScopePath(cgroupsPath string) bool {
	return cgroupsPath != "" && !strings.HasPrefix(cgroupsPath, "/") && strings.Count(cgroupsPath, ":") == 2
}

// Dir maps an OCI cgroupsPath to the cgroup's directory below a
// hierarchy's root (join it to /sys/fs/cgroup on cgroup v2): a cgroupfs
// path is already that (cleaned); "slice:prefix:name" is the expanded
// slice plus the unit, "prefix-name.scope" (or name itself when it is a
// slice), as libcontainer's systemd manager names it. Every reader of a
// container's cgroup files goes through here.
func Dir(cgroupsPath string) (string, error) {
	if !IsScopePath(cgroupsPath) {
		if !strings.HasPrefix(cgroupsPath, "/") {
			return "", fmt.Errorf("cgroups path %q is neither absolute nor slice:prefix:name", cgroupsPath)
		}
		return path.Clean(cgroupsPath), nil
	}
	parts := strings.SplitN(cgroupsPath, ":", 3)
	slice, prefix, name := parts[0], parts[1], parts[2]
	if slice == "" {
		slice = "system.slice" // libcontainer's default parent
	}
	dir, err := ExpandSlice(slice)
	if err != nil {
		return "", fmt.Errorf("cgroups path %q: %w", cgroupsPath, err)
	}
	if name == "" || strings.ContainsAny(name, "/\x00") || strings.Contains(prefix, "/") {
		return "", fmt.Errorf("cgroups path %q: bad unit name", cgroupsPath)
	}
	unit := name
	if !strings.HasSuffix(name, sliceSuffix) {
		unit = prefix + "-" + name + ".scope"
	}
	return path.Join(dir, unit), nil
}

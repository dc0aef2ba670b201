package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// HostDevices is the real Host.Devices: the device node at p, or every device
// node below the directory p (paths as on the host).
func HostDevices(p string) ([]specs.LinuxDevice, error) {
	fi, err := os.Stat(p) // follow symlinks, as kubelet's device plugins expect
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("device %s: %w", p, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("device %s: %w", p, err)
	}
	if !fi.IsDir() {
		d, ok := deviceFromInfo(p, fi)
		if !ok {
			return nil, fmt.Errorf("%s is not a device node: %w", p, errdefs.ErrInvalidArgument)
		}
		return []specs.LinuxDevice{d}, nil
	}
	var out []specs.LinuxDevice
	err = filepath.WalkDir(p, func(sub string, de fs.DirEntry, err error) error {
		if err != nil {
			return nil // a node vanishing under us is not the caller's problem
		}
		if de.IsDir() {
			switch de.Name() {
			case "pts", "shm", "mqueue", "fd", ".lxc", ".udev":
				// Runtime-made or per-container; never copied from the host.
				return filepath.SkipDir
			}
			return nil
		}
		if sub == "/dev/console" || de.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		fi, err := de.Info()
		if err != nil {
			return nil
		}
		if d, ok := deviceFromInfo(sub, fi); ok {
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk devices under %s: %w", p, err)
	}
	return out, nil
}

func deviceFromInfo(p string, fi fs.FileInfo) (specs.LinuxDevice, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return specs.LinuxDevice{}, false
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return specs.LinuxDevice{}, false
	}
	mode := fs.FileMode(st.Mode &^ unix.S_IFMT)
	uid, gid := st.Uid, st.Gid
	return specs.LinuxDevice{
		Path:     p,
		Type:     typ,
		Major:    int64(unix.Major(uint64(st.Rdev))), //nolint:unconvert // Rdev width differs by arch
		Minor:    int64(unix.Minor(uint64(st.Rdev))), //nolint:unconvert
		FileMode: &mode,
		UID:      &uid,
		GID:      &gid,
	}, true
}

// defaultDeviceRules deny every device, then allow what every container
// needs: mknod of anything (the node is useless without the rules below),
// the memory devices, tty/ptmx/pts and tun, as runc's own defaults do. They
// are written out so that external runtimes (crun, runsc) see the same.
func defaultDeviceRules() []specs.LinuxDeviceCgroup {
	i := func(v int64) *int64 { return &v }
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "c", Access: "m"},
		{Allow: true, Type: "b", Access: "m"},
		{Allow: true, Type: "c", Major: i(1), Minor: i(3), Access: "rwm"},    // null
		{Allow: true, Type: "c", Major: i(1), Minor: i(5), Access: "rwm"},    // zero
		{Allow: true, Type: "c", Major: i(1), Minor: i(7), Access: "rwm"},    // full
		{Allow: true, Type: "c", Major: i(1), Minor: i(8), Access: "rwm"},    // random
		{Allow: true, Type: "c", Major: i(1), Minor: i(9), Access: "rwm"},    // urandom
		{Allow: true, Type: "c", Major: i(5), Minor: i(0), Access: "rwm"},    // tty
		{Allow: true, Type: "c", Major: i(5), Minor: i(2), Access: "rwm"},    // ptmx
		{Allow: true, Type: "c", Major: i(136), Access: "rwm"},               // pts/*
		{Allow: true, Type: "c", Major: i(10), Minor: i(200), Access: "rwm"}, // net/tun
	}
}

// criDevices resolves the CRI devices through the host and returns the
// device nodes (at their container paths) and the cgroup rules allowing them.
func criDevices(h Host, devs []*runtimeapi.Device) ([]specs.LinuxDevice, []specs.LinuxDeviceCgroup, error) {
	var nodes []specs.LinuxDevice
	var rules []specs.LinuxDeviceCgroup
	for i, d := range devs {
		field := fmt.Sprintf("devices[%d]", i)
		hostPath, ctrPath := d.GetHostPath(), d.GetContainerPath()
		if hostPath == "" || !path.IsAbs(hostPath) || hasNUL(hostPath) {
			return nil, nil, fmt.Errorf("%s.host_path %q must be an absolute path: %w", field, hostPath, errdefs.ErrInvalidArgument)
		}
		if ctrPath == "" {
			ctrPath = hostPath
		}
		if !path.IsAbs(ctrPath) || hasNUL(ctrPath) {
			return nil, nil, fmt.Errorf("%s.container_path %q must be an absolute path: %w", field, ctrPath, errdefs.ErrInvalidArgument)
		}
		perms := d.GetPermissions()
		if perms == "" {
			perms = "rwm"
		}
		if strings.Trim(perms, "rwm") != "" {
			return nil, nil, fmt.Errorf("%s.permissions %q: only r, w and m are allowed: %w", field, perms, errdefs.ErrInvalidArgument)
		}
		if h.Devices == nil {
			return nil, nil, fmt.Errorf("%s: no host device lookup configured: %w", field, errdefs.ErrFailedPrecondition)
		}
		found, err := h.Devices(hostPath)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", field, err)
		}
		for _, n := range found {
			// A directory maps its tree below container_path.
			rel := strings.TrimPrefix(n.Path, hostPath)
			n.Path = path.Join(ctrPath, rel)
			nodes = append(nodes, n)
			major, minor := n.Major, n.Minor
			rules = append(rules, specs.LinuxDeviceCgroup{Allow: true, Type: n.Type, Major: &major, Minor: &minor, Access: perms})
		}
	}
	return nodes, rules, nil
}

func hasNUL(s string) bool { return strings.IndexByte(s, 0) >= 0 }

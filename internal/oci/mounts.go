package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/userns"
)

// PodFiles are the host paths of the files a sandbox shares with its
// containers. An empty path is not mounted.
type PodFiles struct {
	Hosts      string // -> /etc/hosts
	ResolvConf string // -> /etc/resolv.conf
	Hostname   string // -> /etc/hostname
	Shm        string // -> /dev/shm (the pod's tmpfs, or the host's /dev/shm for host IPC)
}

// mountOptionsAllowed are the CRI Mount.mount_options we pass on (as OCI
// options, applied by the runtime on the bind mount).
var mountOptionsAllowed = []string{"noexec", "nodev", "nosuid", "noatime", "nodiratime", "relatime", "strictatime"}

// ImageVolumeMountFailed starts the message of every image volume error:
// CRI-CONTRACT.md, after kubelet's reason for such failures.
const ImageVolumeMountFailed = "ImageVolumeMountFailed"

// ImageVolume is a CRI mount of an image (Mount.image, KEP 4639).
type ImageVolume struct {
	// Index is the mount's position in ContainerConfig.mounts.
	Index int
	// ContainerPath is cleaned; it keys ContainerInput.ImageVolumes.
	ContainerPath string
	// Image is the image as asked (kubelet sends the id PullImage returned).
	Image string
	// SubPath is image_sub_path: a directory or file of the image to mount
	// instead of its root; "" is the root.
	SubPath string
}

// ImageVolumes validates the image mounts among ms and lists them, before
// anything is mounted for them. Image volumes are read-only by nature: a
// read-write one is refused rather than silently made read-only, as
// api.proto's image field asks.
func ImageVolumes(ms []*runtimeapi.Mount) ([]ImageVolume, error) {
	var out []ImageVolume
	for i, m := range ms {
		if m.GetImage().GetImage() == "" {
			continue
		}
		field := fmt.Sprintf("mounts[%d]", i)
		dst := m.GetContainerPath()
		if !path.IsAbs(dst) || hasNUL(dst) {
			return nil, fmt.Errorf("%s: %s.container_path %q must be an absolute path: %w", ImageVolumeMountFailed, field, dst, errdefs.ErrInvalidArgument)
		}
		if !m.GetReadonly() {
			return nil, fmt.Errorf("%s: %s: image volume %q at %s must be readonly (image volumes cannot be written): %w",
				ImageVolumeMountFailed, field, m.GetImage().GetImage(), dst, errdefs.ErrInvalidArgument)
		}
		sub := m.GetImageSubPath()
		if hasNUL(sub) || slices.Contains(strings.Split(sub, "/"), "..") {
			return nil, fmt.Errorf("%s: %s.image_sub_path %q must be a path inside the image: %w", ImageVolumeMountFailed, field, sub, errdefs.ErrInvalidArgument)
		}
		out = append(out, ImageVolume{Index: i, ContainerPath: path.Clean(dst), Image: m.GetImage().GetImage(), SubPath: sub})
	}
	return out, nil
}

// criMounts converts the CRI mounts; imageVolumes maps the container path
// of each image mount to the host path prepared for it, and idmap is the
// pod's user namespace (nil for the host's). It also returns the rootfs
// propagation the mounts need: a shared or slave mount only propagates if
// the container's root mount does too.
func criMounts(ms []*runtimeapi.Mount, imageVolumes map[string]string, idmap *userns.Mappings) ([]specs.Mount, string, error) {
	var out []specs.Mount
	rootProp := ""
	for i, m := range ms {
		field := fmt.Sprintf("mounts[%d]", i)
		dst := m.GetContainerPath()
		if !path.IsAbs(dst) || hasNUL(dst) {
			return nil, "", fmt.Errorf("%s.container_path %q must be an absolute path: %w", field, dst, errdefs.ErrInvalidArgument)
		}
		uidMap, gidMap, err := mountIDMappings(field, m, idmap)
		if err != nil {
			return nil, "", err
		}
		var real string
		if img := m.GetImage().GetImage(); img != "" {
			// The caller mounted the image and resolved the sub path
			// inside it: nothing to follow here.
			if !m.GetReadonly() {
				return nil, "", fmt.Errorf("%s: %s: image volume %q must be readonly: %w", ImageVolumeMountFailed, field, img, errdefs.ErrInvalidArgument)
			}
			if real = imageVolumes[path.Clean(dst)]; real == "" {
				return nil, "", fmt.Errorf("%s: %s: image volume %q at %s was not prepared: %w", ImageVolumeMountFailed, field, img, dst, errdefs.ErrFailedPrecondition)
			}
		} else {
			src := m.GetHostPath()
			if !path.IsAbs(src) || hasNUL(src) {
				return nil, "", fmt.Errorf("%s.host_path %q must be an absolute path: %w", field, src, errdefs.ErrInvalidArgument)
			}
			// api.proto: follow a symlinked host path and mount its target.
			real, err = filepath.EvalSymlinks(src)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
					return nil, "", fmt.Errorf("%s.host_path %s does not exist: %w", field, src, errdefs.ErrNotFound)
				}
				return nil, "", fmt.Errorf("%s.host_path %s: %v: %w", field, src, err, errdefs.ErrInvalidArgument)
			}
		}

		opts := []string{"rbind"}
		switch m.GetPropagation() {
		case runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
			opts = append(opts, "rprivate")
		case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			opts = append(opts, "rslave")
			if rootProp == "" {
				rootProp = "rslave"
			}
		case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			opts = append(opts, "rshared")
			rootProp = "rshared"
		default:
			return nil, "", fmt.Errorf("%s.propagation %d is unknown: %w", field, m.GetPropagation(), errdefs.ErrInvalidArgument)
		}
		switch {
		case m.GetRecursiveReadOnly():
			// api.proto: recursive_read_only needs readonly and private propagation.
			if !m.GetReadonly() || m.GetPropagation() != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
				return nil, "", fmt.Errorf("%s.recursive_read_only needs readonly=true and PROPAGATION_PRIVATE: %w", field, errdefs.ErrInvalidArgument)
			}
			opts = append(opts, "ro", "rro")
		case m.GetReadonly():
			opts = append(opts, "ro")
		default:
			opts = append(opts, "rw")
		}
		for _, o := range m.GetMountOptions() {
			if !slices.Contains(mountOptionsAllowed, o) {
				return nil, "", fmt.Errorf("%s.mount_options: %q is not one of %v: %w", field, o, mountOptionsAllowed, errdefs.ErrInvalidArgument)
			}
			opts = appendUnique(opts, o)
		}
		// selinux_relabel is ignored: SELinux is not enabled on our hosts.
		// An id-mapped mount is made by the runtime, which names the source
		// when its filesystem cannot be id-mapped.
		out = append(out, specs.Mount{Destination: path.Clean(dst), Type: "bind", Source: real, Options: opts, UIDMappings: uidMap, GIDMappings: gidMap})
	}
	// Parents before children, whatever order kubelet sent them in.
	slices.SortStableFunc(out, func(a, b specs.Mount) int { return depth(a.Destination) - depth(b.Destination) })
	return out, rootProp, nil
}

func depth(p string) int {
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}

// podFileMounts bind the sandbox's files, each skipped when a CRI mount
// targets the same path (kubelet manages /etc/hosts itself). In a pod user
// namespace (idmap set) they are id-mapped: berthd's root-owned files are
// the pod root's.
func podFileMounts(files PodFiles, readonlyRoot bool, idmap *userns.Mappings, taken func(string) bool) []specs.Mount {
	var out []specs.Mount
	mode := "rw"
	if readonlyRoot {
		mode = "ro"
	}
	var uidMap, gidMap []specs.LinuxIDMapping
	if idmap != nil {
		uidMap, gidMap = idmap.UIDs, idmap.GIDs
	}
	for _, f := range []struct{ src, dst string }{
		{files.Hosts, "/etc/hosts"},
		{files.ResolvConf, "/etc/resolv.conf"},
		{files.Hostname, "/etc/hostname"},
	} {
		if f.src != "" && !taken(f.dst) {
			out = append(out, specs.Mount{Destination: f.dst, Type: "bind", Source: f.src, Options: []string{"rbind", "rprivate", mode}, UIDMappings: uidMap, GIDMappings: gidMap})
		}
	}
	if files.Shm != "" && !taken("/dev/shm") {
		out = append(out, specs.Mount{Destination: "/dev/shm", Type: "bind", Source: files.Shm, Options: []string{"rbind", "rprivate", "rw"}, UIDMappings: uidMap, GIDMappings: gidMap})
	}
	return out
}

// standardMounts are the kernel filesystems every container gets. sysfs and
// cgroupfs are read-only unless privileged. /dev/shm is a private tmpfs only
// when no pod shm is given (it is then mounted by podFileMounts).
func standardMounts(privileged, ownShm bool, taken func(string) bool) []specs.Mount {
	roUnlessPriv := "ro"
	if privileged {
		roUnlessPriv = "rw"
	}
	all := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", roUnlessPriv}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", roUnlessPriv}},
	}
	if ownShm {
		all = append(all, specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}})
	}
	return slices.DeleteFunc(all, func(m specs.Mount) bool { return taken(m.Destination) })
}

// DefaultMaskedPaths and DefaultReadonlyPaths are containerd's defaults,
// used unless the CRI security context lists its own.
var (
	DefaultMaskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
		"/proc/sched_debug", "/proc/scsi", "/sys/firmware",
		"/sys/devices/virtual/powercap",
	}
	DefaultReadonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

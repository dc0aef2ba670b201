package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/userns"
)

// Why the layers and not the overlay: overlayfs cannot itself be id-mapped
// (mount_setattr answers EINVAL), but since Linux 5.19 it accepts id-mapped
// mounts as layers, and since 6.13 takes them as file descriptors, so the
// detached id-mapped mounts never appear in any mount table. The upper dir
// stays plain: overlay creates its work dir with berthd's own ids, which an
// id-mapped upper could not store (EOVERFLOW). So what a user-namespaced
// container writes is stored with host ids, as in a rootless container, while
// the shared layers are neither copied nor chowned.

// MountRootfsMapped is MountRootfs for a pod in a user namespace with
// mappings m: the image's files read inside with their owners from the
// image (root's files are the container root's), and the upper dir's root
// is chowned to the host ids of the image root's owner. A mounted rootfs is
// left as it is. An error names the layer whose filesystem refused.
func (s *Store) MountRootfsMapped(key string, m userns.Mappings) (string, error) {
	if err := validKey(key); err != nil {
		return "", err
	}
	s.rootfsMu.Lock()
	defer s.rootfsMu.Unlock()
	mnt, lowers, mounted, err := s.toMount(key)
	if err != nil || mounted {
		return mnt.Target, err
	}
	dir := s.keyDir(key)
	// The runtime sets the rootfs up from inside the user namespace, where
	// berthd's 0700 dir is some stranger's: let it through (not list it).
	// Directories above the store are the admin's: only checked.
	if err := searchable(s.rootfsDir()); err != nil {
		return "", fmt.Errorf("mount rootfs %s: %w", key, err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return "", fmt.Errorf("mount rootfs %s: %w", key, err)
	}
	upper := filepath.Join(dir, "upper")
	// The owner of the image's "/" (lowers[0] is the top layer), mapped:
	// computed from the layer, not from upper, so a retry maps it once.
	if err := chownMapped(upper, lowers[0], m); err != nil {
		return "", fmt.Errorf("mount rootfs %s: %w", key, err)
	}
	ns, err := userns.Open(m)
	if err != nil {
		return "", fmt.Errorf("mount rootfs %s: %w", key, err)
	}
	defer ns.Close()
	if err := mountOverlayMapped(lowers, upper, filepath.Join(dir, "work"), mnt.Target, ns); err != nil {
		return "", fmt.Errorf("mount rootfs %s: %w", key, err)
	}
	return mnt.Target, nil
}

// searchable checks that dir and each directory above it let others
// through: a pod's root is "others" to directories of the host's root.
func searchable(dir string) error {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s (mode %#o) does not let others through, so a user-namespaced pod cannot reach its root filesystem below it: %w",
				p, fi.Mode().Perm(), errdefs.ErrFailedPrecondition)
		}
		if p == "/" || p == "." {
			return nil
		}
	}
}

// chownMapped gives path the host ids that the owner of like maps to; an
// owner outside the mappings leaves path as it is.
func chownMapped(path, like string, m userns.Mappings) error {
	var st unix.Stat_t
	if err := unix.Stat(like, &st); err != nil {
		return &os.PathError{Op: "stat", Path: like, Err: err}
	}
	uid, uok := m.HostUID(st.Uid)
	gid, gok := m.HostGID(st.Gid)
	if !uok || !gok {
		return nil
	}
	if err := os.Lchown(path, int(uid), int(gid)); err != nil {
		return err
	}
	return nil
}

// mountOverlayMapped mounts an overlay of lowers (top-most first), each
// id-mapped through ns, with upper and work as they are, on target ("" =
// only check that it can be made).
func mountOverlayMapped(lowers []string, upper, work, target string, ns *os.File) error {
	fds := make([]int, 0, len(lowers))
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, l := range lowers {
		fd, err := userns.IDMapped(l, ns)
		if err != nil {
			return err
		}
		fds = append(fds, fd)
	}
	return fsmountOverlayWith(func(fsfd int) error {
		for i, fd := range fds {
			if err := unix.FsconfigSetFd(fsfd, "lowerdir+", fd); err != nil {
				err = fsError(fsfd, "fsconfig lowerdir+ (id-mapped "+lowers[i]+")", err)
				if i == 0 && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)) {
					// The kernel refuses the parameter itself, not this
					// layer: 6.8 to 6.12 take lowerdir+ as a string only
					// (EINVAL); before 6.5 overlay's legacy fs context takes
					// no fd at all (EOPNOTSUPP, seen on 6.1).
					return fmt.Errorf("%w: %w", errNoFdLayers, err)
				}
				return err
			}
		}
		return nil
	}, overlay{lowers: lowers, upper: upper, work: work}, target)
}

// errNoFdLayers is why a kernel before 6.13 cannot make a user-namespaced
// pod's rootfs: its overlay does not take layers as file descriptors, which
// is how MountRootfsMapped passes the id-mapped layers.
var errNoFdLayers = fmt.Errorf("user namespaces need overlayfs taking id-mapped layers as file descriptors (Linux 6.13+), and this kernel's does not: %w",
	errdefs.ErrFailedPrecondition)

// ProbeIDMapped reports whether user-namespaced pods can have their files
// here: dir and the directories above it let a pod's root through, and
// the kernel makes an overlay over id-mapped layers on dir's filesystem (as
// MountRootfsMapped makes them) and an id-mapped tmpfs (the pod's
// /dev/shm). Nothing is attached to the mount table; the scratch dir made
// in dir is removed.
func ProbeIDMapped(dir string) error {
	if err := searchable(dir); err != nil {
		return err
	}
	// Any mapping will do: the probe only asks whether mapping works.
	probe := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1 << 20, Size: 65536}}
	ns, err := userns.Open(userns.Mappings{UIDs: probe, GIDs: probe})
	if err != nil {
		return err
	}
	defer ns.Close()
	tmp, err := os.MkdirTemp(dir, ".idmap-probe-")
	if err != nil {
		return fmt.Errorf("id-mapped mount probe: %w", err)
	}
	defer os.RemoveAll(tmp)
	for _, d := range []string{"lower", "upper", "work"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			return fmt.Errorf("id-mapped mount probe: %w", err)
		}
	}
	if err := mountOverlayMapped([]string{filepath.Join(tmp, "lower")}, filepath.Join(tmp, "upper"), filepath.Join(tmp, "work"), "", ns); err != nil {
		return fmt.Errorf("id-mapped overlay layers: %w", err)
	}
	fsfd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("id-mapped tmpfs: fsopen: %w", err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fsError(fsfd, "id-mapped tmpfs: create", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fsError(fsfd, "id-mapped tmpfs: fsmount", err)
	}
	defer unix.Close(mfd)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(ns.Fd())}
	if err := unix.MountSetattr(mfd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("id-mapped tmpfs: %w", err)
	}
	return nil
}

// Package statedir gives berth's state directory a filesystem in memory.
//
// Everything under state_dir describes what runs now: the supervisor's
// container directories (records, output FIFOs), the bundles, libcontainer's
// state, network namespace pins, pod files, sockets. No reboot preserves any
// of it, and it is made and removed for every container, so it belongs on a
// tmpfs, as /run is on most hosts. On a host whose /run is on disk (an inode
// costs ~0.2 ms on this fleet's ext4, ~0.005 ms on tmpfs; a container
// create makes about ten), berthd mounts a tmpfs on the state directory
// itself, when that cannot hide anything alive. The mount outlives berthd
// on purpose: a restarted berthd, and the supervisor, find the state again;
// a reboot clears it.
package statedir

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// BootIDFile, in the state directory, names the boot whose state it holds.
const BootIDFile = ".boot_id"

// Placement says where Prepare left the state directory, and why.
type Placement struct {
	// Memory: on a tmpfs (or ramfs), mounted by Prepare or already there.
	Memory bool
	// Mounted: Prepare mounted it now.
	Mounted bool
	// Why explains a state directory left on disk.
	Why string
}

// Options tune Prepare.
type Options struct {
	// Tmpfs allows mounting a tmpfs (the config's state_dir_tmpfs).
	Tmpfs bool
	// Sockets are the paths of the sockets systemd passed (socket
	// activation, ActivatedSockets). One inside the directory keeps it on
	// disk: a tmpfs mounted over it would hide the socket from every client.
	// berthd prepare-state-dir, run before systemd binds the socket, mounts
	// the tmpfs first instead (hack/systemd/berthd.socket).
	Sockets []string
	// BootIDPath is the kernel's boot id (tests change it).
	BootIDPath string
}

// Prepare creates dir and puts it on a tmpfs unless it is on one already,
// is a mount of the admin's own, or may hold state of this boot: a tmpfs
// is mounted only on an empty directory or over state a reboot left (its
// BootIDFile names another boot), which it removes first.
func Prepare(dir string, opts Options) (Placement, error) {
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return Placement{}, fmt.Errorf("state dir: %w", err)
	}
	// Two berthds starting at once must not stack two mounts: the second
	// waits on the directory's lock, then finds the first's tmpfs.
	d, err := os.Open(dir)
	if err != nil {
		return Placement{}, fmt.Errorf("state dir: %w", err)
	}
	defer d.Close()
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX); err != nil {
		return Placement{}, fmt.Errorf("state dir: lock: %w", err)
	}
	if onMemory(dir) {
		return Placement{Memory: true}, nil
	}
	if opts.BootIDPath == "" {
		opts.BootIDPath = "/proc/sys/kernel/random/boot_id"
	}
	boot, err := os.ReadFile(opts.BootIDPath)
	if err != nil {
		return Placement{}, fmt.Errorf("state dir: boot id: %w", err)
	}
	boot = bytes.TrimSpace(boot)
	p, err := place(dir, boot, opts)
	if err != nil {
		return p, err
	}
	// Written in either case: a directory left on disk moves to a tmpfs
	// at the first start after the next reboot.
	if err := os.WriteFile(filepath.Join(dir, BootIDFile), append(boot, '\n'), 0o644); err != nil {
		return p, fmt.Errorf("state dir: %w", err)
	}
	return p, nil
}

func place(dir string, boot []byte, opts Options) (Placement, error) {
	switch {
	case !opts.Tmpfs:
		return Placement{Why: "state_dir_tmpfs is off"}, nil
	}
	for _, sock := range opts.Sockets {
		if rel, err := filepath.Rel(dir, sock); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return Placement{Why: fmt.Sprintf("the socket systemd passed, %s, is inside it and a tmpfs would hide it; "+
				"run `berthd prepare-state-dir` before systemd binds it (ExecStartPre= in the socket unit, see hack/systemd/berthd.socket)", sock)}, nil
		}
	}
	if m, err := isMountPoint(dir); err != nil || m {
		return Placement{Why: "it is a mount of its own"}, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return Placement{}, fmt.Errorf("state dir: %w", err)
	}
	if len(entries) > 1 || len(entries) == 1 && entries[0].Name() != BootIDFile {
		prev, err := os.ReadFile(filepath.Join(dir, BootIDFile))
		if err != nil || bytes.Equal(bytes.TrimSpace(prev), boot) {
			return Placement{Why: "it holds state of this boot (an older berth kept it on disk); it moves to a tmpfs after the next reboot"}, nil
		}
		// A reboot ended everything this state described.
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return Placement{}, fmt.Errorf("state dir: remove state of an earlier boot: %w", err)
			}
		}
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0711"); err != nil {
		return Placement{}, fmt.Errorf("state dir: mount tmpfs on %s: %w", dir, err)
	}
	return Placement{Memory: true, Mounted: true}, nil
}

func onMemory(dir string) bool {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return false
	}
	return st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC
}

// isMountPoint reports whether dir is the root of a mount.
func isMountPoint(dir string) (bool, error) {
	var st, parent unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, dir, 0, unix.STATX_MNT_ID, &st); err != nil {
		return false, &os.PathError{Op: "statx", Path: dir, Err: err}
	}
	if err := unix.Statx(unix.AT_FDCWD, filepath.Dir(dir), 0, unix.STATX_MNT_ID, &parent); err != nil {
		return false, &os.PathError{Op: "statx", Path: filepath.Dir(dir), Err: err}
	}
	if st.Mask&parent.Mask&unix.STATX_MNT_ID == 0 {
		return st.Dev_major != parent.Dev_major || st.Dev_minor != parent.Dev_minor, nil
	}
	return st.Mnt_id != parent.Mnt_id, nil
}

// ActivatedSockets returns the paths of the unix sockets systemd passed
// this process (LISTEN_PID/LISTEN_FDS), without consuming them.
func ActivatedSockets() []string {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
		return nil
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n <= 0 {
		return nil
	}
	return socketPaths(listenFDsStart, n)
}

// listenFDsStart is sd_listen_fds(3)'s first passed descriptor.
const listenFDsStart = 3

// socketPaths names the filesystem unix sockets among fds first..first+n-1.
func socketPaths(first, n int) []string {
	var paths []string
	for fd := first; fd < first+n; fd++ {
		sa, err := unix.Getsockname(fd)
		if err != nil {
			continue
		}
		if u, ok := sa.(*unix.SockaddrUnix); ok && strings.HasPrefix(u.Name, "/") {
			paths = append(paths, u.Name)
		}
	}
	return paths
}

// Package userns makes the user namespace handles that id-mapped mounts
// need. mount_setattr(MOUNT_ATTR_IDMAP) takes the mapping from a user
// namespace file descriptor, and the kernel offers no call that makes one
// from a mapping: a process has to be created in a new user namespace.
package userns

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Mappings are the id mappings of a pod's user namespace: container id
// ContainerID maps to host id HostID, for Size ids.
type Mappings struct {
	UIDs, GIDs []specs.LinuxIDMapping
}

// HostUID is the host uid that container uid id maps to; false if unmapped.
func (m Mappings) HostUID(id uint32) (uint32, bool) { return toHost(m.UIDs, id) }

// HostGID is the host gid that container gid id maps to; false if unmapped.
func (m Mappings) HostGID(id uint32) (uint32, bool) { return toHost(m.GIDs, id) }

func toHost(ms []specs.LinuxIDMapping, id uint32) (uint32, bool) {
	for _, m := range ms {
		if id >= m.ContainerID && uint64(id) < uint64(m.ContainerID)+uint64(m.Size) {
			return m.HostID + (id - m.ContainerID), true
		}
	}
	return 0, false
}

// Open returns a handle (an nsfs file) of a new user namespace with
// mappings m. The namespace lives as long as the file is open.
//
// How: a child is started in a new user namespace with ptrace on, so that
// the kernel stops it right after its execve and it never runs a single
// instruction of the binary (berthd's own, which is sure to exist); its
// namespace file is opened, then the child is killed and reaped. The
// calling thread stays locked for the whole time because it is the tracer.
func Open(m Mappings) (*os.File, error) {
	if len(m.UIDs) == 0 || len(m.GIDs) == 0 {
		return nil, errors.New("user namespace: uid and gid mappings are both required")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p, err := os.StartProcess("/proc/self/exe", []string{"berth-userns-holder"}, &os.ProcAttr{Sys: &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER,
		UidMappings: sysMappings(m.UIDs),
		GidMappings: sysMappings(m.GIDs),
		Ptrace:      true,
		// Should berthd die before the kill below, the child must not
		// be left behind (or detached, and run).
		Pdeathsig: unix.SIGKILL,
	}})
	if err != nil {
		return nil, fmt.Errorf("user namespace: start a holder process: %w", err)
	}
	defer reap(p)
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", p.Pid))
	if err != nil {
		return nil, fmt.Errorf("user namespace: %w", err)
	}
	return f, nil
}

// reap kills and waits for the holder. A traced child reports its ptrace
// stops to wait4 too, so wait until it has really gone.
func reap(p *os.Process) {
	_ = p.Kill()
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(p.Pid, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || ws.Exited() || ws.Signaled() {
			break
		}
	}
	_ = p.Release()
}

func sysMappings(ms []specs.LinuxIDMapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(ms))
	for i, m := range ms {
		out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
	}
	return out
}

// IDMapped returns a detached mount (an open_tree file descriptor the
// caller closes) of the directory tree at path, without its submounts,
// id-mapped through the user namespace ns: an id stored as n on disk reads
// as the host id that container id n maps to. The error names path, as a
// filesystem without id-mapped mount support fails here.
func IDMapped(path string, ns *os.File) (int, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, path, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return -1, &os.PathError{Op: "open_tree", Path: path, Err: err}
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(ns.Fd())}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
			// The kernel (before 5.12) or the filesystem cannot id-map.
			return -1, fmt.Errorf("id-mapped mount of %s (does its filesystem support id-mapped mounts?): %w: %w", path, err, errdefs.ErrFailedPrecondition)
		}
		return -1, fmt.Errorf("id-mapped mount of %s: %w", path, err)
	}
	return fd, nil
}

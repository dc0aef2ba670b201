package netns

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ensureSharedMount makes dir a mount point with shared propagation, as
// iproute2 does for /run/netns.
//
// Why shared: a pin is a mount, and every mount namespace copied from ours
// while a pin exists (a container given a host /run mount, a sandboxed
// service, `unshare -m`) holds its own copy of that mount, which keeps the
// namespace and its veth alive after we unmount ours. Under a shared mount,
// those copies are peers (or slaves) of ours, so Remove's unmount propagates
// to them and the namespace is really freed; new pins propagate the same way,
// so tools in other mount namespaces see them. A private dir would leak a
// namespace per copied mount namespace instead.
//
// Why a mount point: propagation is a property of a mount, and a plain
// directory belongs to its parent's mount (whose propagation is not ours to
// change), so dir is bind-mounted onto itself first when needed.
func ensureSharedMount(dir string) error {
	err := unix.Mount("", dir, "", unix.MS_SHARED, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) { // EINVAL: dir is not a mount point
		return fmt.Errorf("make %s a shared mount: %w", dir, err)
	}
	// Concurrent callers (goroutines or another berthd) must bind dir only
	// once, or the binds stack. flock works on a directory fd, and the lock
	// sits on the inode, which the bind mount shares.
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", dir, err)
	}
	defer unix.Flock(fd, unix.LOCK_UN)
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err == nil {
		return nil // another caller won the race
	}
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s onto itself: %w", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		return fmt.Errorf("make %s a shared mount: %w", dir, err)
	}
	return nil
}

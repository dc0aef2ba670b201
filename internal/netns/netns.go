// Package netns creates, enters and removes pinned network namespaces: a
// namespace kept alive by a bind mount of its nsfs file at <dir>/<id>, so it
// outlives every process in it and berthd itself (a restarted berthd finds the
// pod's network where it left it).
//
// Every namespace switch happens on a goroutine locked to its OS thread; the
// rest of the process never changes namespace. If a thread cannot be switched
// back, it is left locked so that the Go runtime kills it when the goroutine
// ends, instead of reusing a thread that sits in the wrong namespace.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
)

// threadNetNS is the calling thread's own network namespace file. The
// per-thread path matters: /proc/self names the thread group leader, which is
// not the thread we switched.
const threadNetNS = "/proc/thread-self/ns/net"

// New creates a network namespace and pins it at <dir>/<id>; it returns that
// path. dir is made a shared mount point first (see ensureSharedMount). The
// caller's namespaces are unchanged. An existing pin file with the same id
// is ErrAlreadyExists, even a stale one (see Pinned) that the caller must
// Remove first; on any other failure nothing is left behind.
func New(dir, id string) (string, error) {
	return pin(dir, id, pinNew)
}

// Pin pins an existing network namespace, the nsfs file src (such as
// /proc/<pid>/ns/net), at <dir>/<id> and returns that path, with New's
// rules for dir and for an existing pin. It is for namespaces a process
// had to create itself: one owned by a pod's user namespace.
func Pin(dir, id, src string) (string, error) {
	return pin(dir, id, func(path string) error {
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("pin netns %s at %s: %w", src, path, err)
		}
		return nil
	})
}

// pin makes the pin file <dir>/<id> and has mount bind a namespace onto it.
func pin(dir, id string, mount func(path string) error) (string, error) {
	if err := validID(id); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", fmt.Errorf("create netns dir: %w", err)
	}
	if err := ensureSharedMount(dir); err != nil {
		return "", err
	}
	path := filepath.Join(dir, id)
	// The mount target must exist; O_EXCL makes a second pin of the same id
	// fail instead of stacking a second namespace on the first one.
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("netns %s: %w", path, errdefs.ErrAlreadyExists)
		}
		return "", fmt.Errorf("create netns pin %s: %w", path, err)
	}
	f.Close()
	if err := mount(path); err != nil {
		// The mount failed before or at binding, so there is no mount to
		// undo, but Remove is harmless if there were.
		_ = Remove(path)
		return "", err
	}
	return path, nil
}

// pinNew creates the namespace on a locked thread and bind-mounts it at path.
func pinNew(path string) error {
	unshare := func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare netns: %w", err)
		}
		return nil
	}
	return inThreadNetNS(unshare, func() error {
		if err := unix.Mount(threadNetNS, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("pin netns at %s: %w", path, err)
		}
		return nil
	})
}

// inThreadNetNS runs fn on a locked OS thread that enter moved into another
// network namespace, then moves the thread back. A thread that cannot be
// moved back stays locked: it dies with its goroutine instead of running
// other goroutines in the wrong namespace.
func inThreadNetNS(enter, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(threadNetNS)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := enter(); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		fnErr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(fnErr, fmt.Errorf("restore thread netns: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

// Remove unpins the namespace at path and deletes the pin file. The kernel
// frees the namespace (and its interfaces) once no process is left in it.
// Remove is idempotent: a pin that is not mounted, or not there at all, is
// not an error, so that teardown can be retried after a crash half-way.
func Remove(path string) error {
	// Loop in case the pin was mounted more than once; EINVAL means "not a
	// mount point" and ENOENT "already gone".
	for i := 0; i < 8; i++ {
		err := unix.Unmount(path, unix.MNT_DETACH)
		if err == nil {
			continue
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break
		}
		return fmt.Errorf("unpin netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns pin %s: %w", path, err)
	}
	return nil
}

// Do runs fn on an OS thread that has joined the namespace at path, then
// switches the thread back. fn must do its namespaced work on the calling
// goroutine: goroutines it starts (and so Go's DNS resolver, in some cases)
// run in berthd's namespace. A missing path is ErrNotFound.
func Do(path string, fn func() error) error {
	target, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("netns %s: %w", path, errdefs.ErrNotFound)
		}
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer target.Close()

	enter := func() error {
		// setns checks the namespace type, so a path that is not a network
		// namespace (an unmounted pin after a reboot) fails here.
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("enter netns %s: %w", path, err)
		}
		return nil
	}
	return inThreadNetNS(enter, fn)
}

// Pinned reports whether path holds a mounted namespace. A pin file left from
// before a reboot (when /run is not a tmpfs) exists but is not pinned.
func Pinned(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	return st.Type == unix.NSFS_MAGIC, nil
}

// List returns the ids of the pins in dir, sorted, for reconciliation and
// leak checks. A missing dir has none.
func List(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list netns dir: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		ids = append(ids, e.Name())
	}
	sort.Strings(ids)
	return ids, nil
}

func validID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") || strings.HasPrefix(id, ".") {
		return fmt.Errorf("netns id %q: %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

package archive

import (
	"errors"
	"fmt"
	"os"
	"path"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Every path the applier touches is resolved by the kernel with openat2
// RESOLVE_BENEATH from a descriptor of the layer root, and every change is a
// *at call on the resulting parent descriptor with a single name component
// that is never followed. RESOLVE_BENEATH (rather than securejoin's or
// RESOLVE_IN_ROOT's "clamp into the root") makes a symlink that points out of
// the root, absolute or through "..", an error: the layer fails instead of
// being quietly rewritten, which is what a hostile layer deserves. Symlinks
// that stay inside are followed, as tar would.
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS

// openBeneath opens the directory rel ("." for the root) under root. The
// caller owns the returned descriptor.
func openBeneath(root int, rel string) (int, error) {
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: resolveFlags,
	}
	for range 8 {
		fd, err := unix.Openat2(root, rel, &how)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue // a concurrent rename somewhere on the host; retry
		}
		if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ELOOP) {
			return -1, fmt.Errorf("%s: path escapes the layer root: %w", rel, errdefs.ErrInvalidArgument)
		}
		if err != nil {
			return -1, &os.PathError{Op: "openat2", Path: rel, Err: err}
		}
		return fd, nil
	}
	return -1, fmt.Errorf("%s: openat2 kept retrying: %w", rel, errdefs.ErrUnavailable)
}

// mkdirAll opens directory rel under root, creating missing directories (mode
// 0755, owned by us, like tar's implicit parents). mkdirat never follows a
// symlink in the last component, so a dangling symlink fails here instead of
// creating its target.
func (a *applier) mkdirAll(rel string) (int, error) {
	fd, err := openBeneath(a.root, rel)
	if err == nil || rel == "." || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	pfd, err := a.mkdirAll(path.Dir(rel))
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	base := path.Base(rel)
	switch err := unix.Mkdirat(pfd, base, 0o755); {
	case err == nil:
		a.stats.Inodes++
	case !errors.Is(err, unix.EEXIST):
		return -1, &os.PathError{Op: "mkdirat", Path: rel, Err: err}
	}
	fd, err = unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "openat", Path: rel, Err: err}
	}
	return fd, nil
}

// parent returns a descriptor of directory rel, creating it if needed. The
// applier keeps the last one, since tar streams list a directory's entries
// together; the descriptor stays valid until the next parent call.
func (a *applier) parent(rel string) (int, error) {
	if a.pfd >= 0 && a.pvalid && a.prel == rel {
		return a.pfd, nil
	}
	fd, err := a.mkdirAll(rel)
	if err != nil {
		return -1, err
	}
	if a.pfd >= 0 {
		unix.Close(a.pfd)
	}
	a.pfd, a.prel, a.pvalid = fd, rel, true
	return fd, nil
}

// forgetParent is called whenever something is removed: the cached path may
// have been resolved through what is gone. The descriptor stays open because
// the caller may still be using it.
func (a *applier) forgetParent() { a.pvalid = false }

// clear removes whatever exists at name in dirfd so that a later entry
// replaces an earlier one, as tar does. An existing directory is kept when
// keepDir is set (a directory entry over a directory merges). It reports
// whether a directory was kept.
func (a *applier) clear(dirfd int, name string, keepDir bool) (bool, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, &os.PathError{Op: "fstatat", Path: name, Err: err}
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if isDir && keepDir {
		return true, nil
	}
	a.forgetParent()
	return false, removeAt(dirfd, name, isDir)
}

// removeAt removes name from dirfd, recursively for a directory, never
// following a symlink.
func removeAt(dirfd int, name string, isDir bool) error {
	if !isDir {
		if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return &os.PathError{Op: "unlinkat", Path: name, Err: err}
		}
		return nil
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "openat", Path: name, Err: err}
	}
	d := os.NewFile(uintptr(fd), name)
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return &os.PathError{Op: "readdir", Path: name, Err: err}
	}
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "fstatat", Path: n, Err: err}
		}
		if err := removeAt(fd, n, st.Mode&unix.S_IFMT == unix.S_IFDIR); err != nil {
			return err
		}
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "rmdir", Path: name, Err: err}
	}
	return nil
}

package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
)

// applier holds the state of one Apply. It is used by one goroutine.
type applier struct {
	root  int // descriptor of the layer root; every path is resolved from it
	opts  Options
	stats Stats
	buf   []byte

	// pfd is the last parent directory opened, for path prel; pvalid is
	// cleared when a removal may have changed what prel resolves to.
	pfd    int
	prel   string
	pvalid bool

	// dirTimes are applied after every entry is written, because writing a
	// directory's contents changes its mtime.
	dirTimes []dirTime
}

type dirTime struct {
	rel string
	ts  []unix.Timespec
}

func newApplier(dir string, opts Options) (*applier, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return &applier{root: fd, opts: opts, buf: make([]byte, 128<<10), pfd: -1}, nil
}

func (a *applier) close() {
	if a.pfd >= 0 {
		unix.Close(a.pfd)
	}
	unix.Close(a.root)
}

func (a *applier) apply(hdr *tar.Header, r io.Reader) error {
	p, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	kind, target, err := classify(p)
	if err != nil {
		return err
	}
	switch kind {
	case kindSkip:
		return nil
	case kindOpaque:
		fd, err := a.parent(target)
		if err != nil {
			return err
		}
		if err := unix.Fsetxattr(fd, opaqueXattr, []byte("y"), 0); err != nil {
			return &os.PathError{Op: "setxattr " + opaqueXattr, Path: target, Err: err}
		}
		return nil
	case kindWhiteout:
		return a.whiteout(target)
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || hdr.Uid > 1<<32-2 || hdr.Gid > 1<<32-2 {
		return fmt.Errorf("owner %d:%d out of range: %w", hdr.Uid, hdr.Gid, errdefs.ErrInvalidArgument)
	}
	if p == "." {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("layer root is not a directory (type %q): %w", hdr.Typeflag, errdefs.ErrInvalidArgument)
		}
		fd, err := a.parent(".")
		if err != nil {
			return err
		}
		a.dirTimes = append(a.dirTimes, dirTime{".", times(hdr)})
		return a.fdMeta(fd, hdr)
	}
	dfd, err := a.parent(path.Dir(p))
	if err != nil {
		return err
	}
	base := path.Base(p)
	switch hdr.Typeflag {
	case tar.TypeDir:
		return a.dir(dfd, base, p, hdr)
	case tar.TypeReg, '\x00', tar.TypeGNUSparse:
		return a.file(dfd, base, hdr, r)
	case tar.TypeSymlink:
		return a.symlink(dfd, base, hdr)
	case tar.TypeLink:
		return a.hardlink(dfd, base, p, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return a.node(dfd, base, hdr)
	case tar.TypeXGlobalHeader:
		return nil
	}
	return fmt.Errorf("unsupported tar entry type %q: %w", hdr.Typeflag, errdefs.ErrInvalidArgument)
}

// whiteout hides target of the lower layers. The OCI layer spec says a
// whiteout only applies to lower layers, so when this layer already made
// target, that entry stays (it hides the lower one by itself).
func (a *applier) whiteout(target string) error {
	dfd, err := a.parent(path.Dir(target))
	if err != nil {
		return err
	}
	base := path.Base(target)
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		return nil
	}
	if err := unix.Mknodat(dfd, base, unix.S_IFCHR, 0); err != nil {
		return &os.PathError{Op: "mknod whiteout", Path: target, Err: err}
	}
	a.stats.Inodes++
	return nil
}

func (a *applier) dir(dfd int, base, rel string, hdr *tar.Header) error {
	kept, err := a.clear(dfd, base, true)
	if err != nil {
		return err
	}
	if !kept {
		if err := unix.Mkdirat(dfd, base, 0o700); err != nil {
			return &os.PathError{Op: "mkdirat", Path: rel, Err: err}
		}
		a.stats.Inodes++
	}
	fd, err := unix.Openat(dfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "openat", Path: rel, Err: err}
	}
	defer unix.Close(fd)
	a.dirTimes = append(a.dirTimes, dirTime{rel, times(hdr)})
	return a.fdMeta(fd, hdr)
}

// writerOnly hides os.File's ReadFrom, so io.CopyBuffer uses our buffer
// instead of allocating one per file.
type writerOnly struct{ io.Writer }

func (a *applier) file(dfd int, base string, hdr *tar.Header, r io.Reader) error {
	if hdr.Size > a.opts.MaxBytes-a.stats.Bytes {
		return fmt.Errorf("layer contents exceed %d bytes: %w", a.opts.MaxBytes, errdefs.ErrResourceExhausted)
	}
	if _, err := a.clear(dfd, base, false); err != nil {
		return err
	}
	fd, err := unix.Openat(dfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "create", Path: base, Err: err}
	}
	a.stats.Inodes++
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	n, err := io.CopyBuffer(writerOnly{f}, r, a.buf)
	a.stats.Bytes += n
	if err != nil {
		return fmt.Errorf("write %s: %w", base, err)
	}
	if err := a.fdMeta(fd, hdr); err != nil {
		return err
	}
	return a.setTimes(dfd, base, hdr)
}

func (a *applier) symlink(dfd int, base string, hdr *tar.Header) error {
	if _, err := a.clear(dfd, base, false); err != nil {
		return err
	}
	// The target is stored verbatim: it is never followed while extracting
	// except by openat2 RESOLVE_BENEATH, which refuses it if it leads out.
	if err := unix.Symlinkat(hdr.Linkname, dfd, base); err != nil {
		return &os.PathError{Op: "symlink", Path: base, Err: err}
	}
	a.stats.Inodes++
	return a.pathMeta(dfd, base, hdr, false)
}

// hardlink links to an earlier entry of this layer: the target is resolved
// beneath the root like any other path, and the link is made to the target
// itself (a symlink target is linked, not followed).
func (a *applier) hardlink(dfd int, base, rel string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hard link target: %w", err)
	}
	if target == "." {
		return fmt.Errorf("hard link to the layer root: %w", errdefs.ErrInvalidArgument)
	}
	if target == rel {
		return nil
	}
	tfd, err := openBeneath(a.root, path.Dir(target))
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", hdr.Linkname, err)
	}
	defer unix.Close(tfd)
	tbase := path.Base(target)
	var st unix.Stat_t
	if err := unix.Fstatat(tfd, tbase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "hard link target", Path: hdr.Linkname, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("hard link to directory %q: %w", hdr.Linkname, errdefs.ErrInvalidArgument)
	}
	if _, err := a.clear(dfd, base, false); err != nil {
		return err
	}
	if err := unix.Linkat(tfd, tbase, dfd, base, 0); err != nil {
		return &os.PathError{Op: "link", Path: rel, Err: err}
	}
	return nil
}

func (a *applier) node(dfd int, base string, hdr *tar.Header) error {
	var mode uint32
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode = unix.S_IFCHR
	case tar.TypeBlock:
		mode = unix.S_IFBLK
	default:
		mode = unix.S_IFIFO
	}
	if a.opts.NoDevices && mode != unix.S_IFIFO {
		return fmt.Errorf("device node: %w", errdefs.ErrPermissionDenied)
	}
	if _, err := a.clear(dfd, base, false); err != nil {
		return err
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	if err := unix.Mknodat(dfd, base, mode|0o600, int(dev)); err != nil {
		return &os.PathError{Op: "mknod", Path: base, Err: err}
	}
	a.stats.Inodes++
	return a.pathMeta(dfd, base, hdr, true)
}

func times(hdr *tar.Header) []unix.Timespec {
	at := hdr.AccessTime
	if at.IsZero() {
		at = hdr.ModTime
	}
	return []unix.Timespec{timespec(at), timespec(hdr.ModTime)}
}

func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

func (a *applier) setTimes(dfd int, base string, hdr *tar.Header) error {
	if err := unix.UtimesNanoAt(dfd, base, times(hdr), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimensat", Path: base, Err: err}
	}
	return nil
}

// finishDirTimes sets directory times last, deepest last-listed first. A
// directory replaced or made unreachable by a later entry is skipped, and
// the path is resolved beneath the root again, so no symlink the layer
// planted meanwhile is followed out.
func (a *applier) finishDirTimes() error {
	for i := len(a.dirTimes) - 1; i >= 0; i-- {
		dt := a.dirTimes[i]
		if dt.rel == "." {
			if err := unix.UtimesNanoAt(a.root, ".", dt.ts, 0); err != nil {
				return &os.PathError{Op: "utimensat", Path: ".", Err: err}
			}
			continue
		}
		dfd, err := openBeneath(a.root, path.Dir(dt.rel))
		if err != nil {
			continue
		}
		base := path.Base(dt.rel)
		var st unix.Stat_t
		err = unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			err = unix.UtimesNanoAt(dfd, base, dt.ts, unix.AT_SYMLINK_NOFOLLOW)
			if err != nil {
				err = &os.PathError{Op: "utimensat", Path: dt.rel, Err: err}
			}
		} else {
			err = nil
		}
		unix.Close(dfd)
		if err != nil {
			return err
		}
	}
	return nil
}

// errSkipped reports whether setting an xattr failed only because this
// filesystem or inode type cannot hold it, which tar tools tolerate.
func errSkipped(err error) bool {
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM)
}

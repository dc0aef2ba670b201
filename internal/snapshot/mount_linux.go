package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Why lowerdir+: the legacy mount(2) takes all of overlay's options as one
// page of text, and the absolute paths of our layers (108 bytes each under
// /var/lib/berth) fill it at 37 layers. The new mount API of Linux 6.8+ passes each lower dir in
// its own fsconfig "lowerdir+" call: no length limit, no escaping of ':' or
// ','. Older kernels (6.1 of Debian 12, 5.14 of RHEL 9, 5.15 of Ubuntu 22.04)
// only have the page, so there an overlay whose absolute options do not fit
// is mounted in its short form (see shortOverlayData): numbered symlinks to
// the layers in the snapshot's own directory, named relative to it by a
// mount made from a thread whose working directory is that directory.

// maxOverlayLayers is overlayfs's own stack limit (OVL_MAX_STACK), the same
// with lowerdir+ and without.
const maxOverlayLayers = 500

// linksDir is the directory, in a rootfs or read-only snapshot dir, of the
// short form's symlinks: linksDir/<n> is the n-th lower dir, top-most first.
const linksDir = "l"

// overlay is one overlay mount: lowers top-most first, and upper and work,
// both "" for a read-only overlay (which needs two lowers at least).
type overlay struct {
	lowers      []string
	upper, work string
}

func (o overlay) readOnly() bool { return o.upper == "" }

// overlayOptions is the legacy (mount(2)) form with absolute paths, also
// what Mount reports. lowers are top-most first.
func overlayOptions(lowers []string, upper, work string) []string {
	esc := make([]string, len(lowers))
	for i, l := range lowers {
		esc[i] = escapeOption(l)
	}
	opts := []string{"lowerdir=" + strings.Join(esc, ":")}
	if upper != "" {
		opts = append([]string{"index=off"}, append(opts, "upperdir="+escapeOption(upper), "workdir="+escapeOption(work))...)
	}
	return opts
}

// escapeOption backslash-escapes what overlay's option parser splits on.
func escapeOption(s string) string {
	return strings.NewReplacer(`\`, `\\`, `:`, `\:`, `,`, `\,`).Replace(s)
}

// legacyData is the mount(2) data of o in the form that fits a page of
// pageSize bytes (with its terminating NUL): the absolute paths when they
// fit, else the short form, to be mounted from dir (short true). An overlay
// even the short form cannot hold is ErrFailedPrecondition, naming the
// layer count and the limit.
func legacyData(o overlay, dir string, pageSize int) (data string, short bool, err error) {
	if err := checkStack(len(o.lowers)); err != nil {
		return "", false, err
	}
	data = strings.Join(overlayOptions(o.lowers, o.upper, o.work), ",")
	if len(data) < pageSize {
		return data, false, nil
	}
	data, err = shortOverlayData(o, dir)
	if err != nil {
		return "", false, err
	}
	if len(data) >= pageSize {
		return "", false, fmt.Errorf("overlay of %d layers: even with short paths its mount options take %d bytes, over the %d-byte page that mount(2) allows on kernels before Linux 6.8 (overlay lowerdir+): %w",
			len(o.lowers), len(data), pageSize-1, errdefs.ErrFailedPrecondition)
	}
	return data, true, nil
}

func checkStack(n int) error {
	if n > maxOverlayLayers {
		return fmt.Errorf("overlay of %d layers: overlayfs stacks at most %d: %w", n, maxOverlayLayers, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// shortOverlayData names o's dirs relative to dir: lower n as linksDir/n
// (~5 bytes a layer, so overlay's 500 layers take under 3 KiB), upper and
// work by their path from dir.
func shortOverlayData(o overlay, dir string) (string, error) {
	var b strings.Builder
	b.WriteString("lowerdir=")
	for i := range o.lowers {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(linksDir + "/" + strconv.Itoa(i))
	}
	if o.readOnly() {
		return b.String(), nil
	}
	upper, err1 := filepath.Rel(dir, o.upper)
	work, err2 := filepath.Rel(dir, o.work)
	if err := errors.Join(err1, err2); err != nil {
		return "", err
	}
	return "index=off," + b.String() + ",upperdir=" + escapeOption(upper) + ",workdir=" + escapeOption(work), nil
}

// mountOverlay mounts o on target (read-only when it has no upper dir),
// with lowerdir+ where the kernel has it (useNew), else with mount(2),
// in the short form from dir when the absolute paths do not fit a page.
func mountOverlay(o overlay, target, dir string, useNew bool) error {
	if useNew {
		return fsmountOverlayWith(func(fsfd int) error {
			for _, l := range o.lowers {
				if err := unix.FsconfigSetString(fsfd, "lowerdir+", l); err != nil {
					return fsError(fsfd, "fsconfig lowerdir+="+l, err)
				}
			}
			return nil
		}, o, target)
	}
	data, short, err := legacyData(o, dir, os.Getpagesize())
	if err != nil {
		return err
	}
	var flags uintptr
	if o.readOnly() {
		flags = unix.MS_RDONLY
	}
	if !short {
		if err := unix.Mount("overlay", target, "overlay", flags, data); err != nil {
			return &os.PathError{Op: "mount overlay", Path: target, Err: err}
		}
		return nil
	}
	if err := makeLinks(filepath.Join(dir, linksDir), o.lowers); err != nil {
		return fmt.Errorf("overlay of %d layers: %w", len(o.lowers), err)
	}
	if err := mountFrom(dir, target, flags, data); err != nil {
		return &os.PathError{Op: fmt.Sprintf("mount overlay of %d layers (short paths from %s)", len(o.lowers), dir), Path: target, Err: err}
	}
	return nil
}

// makeLinks makes dir/<n> a symlink to lowers[n], keeping the links a
// mount before made (a key's lowers never change): making 128 links costs
// tens of ms on a busy disk, reading them back ~1 ms.
func makeLinks(dir string, lowers []string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	for i, l := range lowers {
		link := filepath.Join(dir, strconv.Itoa(i))
		if got, err := os.Readlink(link); err == nil && got == l {
			continue
		}
		if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.Symlink(l, link); err != nil {
			return err
		}
	}
	return nil
}

// mountFrom runs mount(2) with data's relative paths resolved from dir.
// The working directory is shared by the threads of a process, so the
// mount runs on a thread of its own that first unshares its filesystem
// context (CLONE_FS) and then changes directory; the thread stays locked
// and so ends with its goroutine, never to run other Go code in dir.
func mountFrom(dir, target string, flags uintptr, data string) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the runtime ends the thread when we return.
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			done <- fmt.Errorf("unshare CLONE_FS: %w", err)
			return
		}
		if err := unix.Chdir(dir); err != nil {
			done <- &os.PathError{Op: "chdir", Path: dir, Err: err}
			return
		}
		done <- unix.Mount("overlay", target, "overlay", flags, data)
	}()
	return <-done
}

// ProbeLowerdirPlus reports whether the kernel makes an overlay from
// lowerdir+ (Linux 6.8). It makes one, unattached, over two empty dirs in
// scratch: a mere fsconfig is not proof, as before 6.5 overlay has no
// native fs context and the kernel's legacy one accepts any key there, to
// fail only at create.
//
// Any failure answers false: mount(2) with short paths mounts every
// overlay up to overlay's own limit on every kernel, only less directly.
func ProbeLowerdirPlus(scratch string) bool {
	tmp, err := os.MkdirTemp(scratch, "lowerdir-probe-")
	if err != nil {
		return false
	}
	defer os.RemoveAll(tmp)
	lowers := []string{filepath.Join(tmp, "a"), filepath.Join(tmp, "b")}
	for _, l := range lowers {
		if err := os.Mkdir(l, 0o755); err != nil {
			return false
		}
	}
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return false
	}
	defer unix.Close(fsfd)
	for _, l := range lowers {
		if err := unix.FsconfigSetString(fsfd, "lowerdir+", l); err != nil {
			return false
		}
	}
	return unix.FsconfigCreate(fsfd) == nil
}

// fsmountOverlayWith mounts the overlay o, whose lower dirs setLowers gives
// the fs context, on target; an empty target only checks that the overlay
// can be made.
func fsmountOverlayWith(setLowers func(fsfd int) error, o overlay, target string) error {
	if err := checkStack(len(o.lowers)); err != nil {
		return err
	}
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return &os.PathError{Op: "fsopen overlay", Path: target, Err: err}
	}
	defer unix.Close(fsfd)
	set := func(key, value string) error {
		if err := unix.FsconfigSetString(fsfd, key, value); err != nil {
			return fsError(fsfd, "fsconfig "+key+"="+value, err)
		}
		return nil
	}
	if err := setLowers(fsfd); err != nil {
		return err
	}
	var attrs int
	if o.readOnly() {
		attrs = unix.MOUNT_ATTR_RDONLY
	} else {
		for _, kv := range [][2]string{{"upperdir", o.upper}, {"workdir", o.work}, {"index", "off"}} {
			if err := set(kv[0], kv[1]); err != nil {
				return err
			}
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fsError(fsfd, "create overlay", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return fsError(fsfd, "fsmount overlay", err)
	}
	defer unix.Close(mfd)
	if target == "" {
		return nil
	}
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return &os.PathError{Op: "move_mount overlay", Path: target, Err: err}
	}
	return nil
}

// fsLog drains the messages the kernel logged on an fs context (why a
// fsconfig failed, in words).
func fsLog(fsfd int) string {
	var msgs []string
	buf := make([]byte, 4096)
	for {
		n, err := unix.Read(fsfd, buf)
		if err != nil || n <= 0 {
			return strings.Join(msgs, "; ")
		}
		msgs = append(msgs, string(buf[:n]))
	}
}

func fsError(fsfd int, op string, err error) error {
	if msg := fsLog(fsfd); msg != "" {
		return fmt.Errorf("%s: %w (%s)", op, err, msg)
	}
	return fmt.Errorf("%s: %w", op, err)
}

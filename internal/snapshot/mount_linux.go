package snapshot

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Why lowerdir+: the legacy mount(2) takes all of overlay's options as one
// page of text, and a 50-layer chain of ~90-byte snapshot paths does not fit.
// The classic workarounds are short symlinked ids per layer plus a chdir
// into the store before mounting with relative paths (docker's overlay2);
// but the working directory is process-wide, which a multi-threaded daemon
// cannot change safely, and the ids are more state to keep consistent. The
// new mount API (Linux 6.8+, this fleet runs 6.18) passes each lower dir in
// its own fsconfig "lowerdir+" call: no length limit, no escaping of ':' or
// ','. On kernels without it, mount(2) is still used when the options fit.

// overlayOptions is the legacy (mount(2)) form, also what Mount reports.
// lowers are top-most first.
func overlayOptions(lowers []string, upper, work string) []string {
	esc := make([]string, len(lowers))
	for i, l := range lowers {
		esc[i] = escapeOption(l)
	}
	return []string{
		"index=off",
		"lowerdir=" + strings.Join(esc, ":"),
		"upperdir=" + escapeOption(upper),
		"workdir=" + escapeOption(work),
	}
}

// escapeOption backslash-escapes what overlay's option parser splits on.
func escapeOption(s string) string {
	return strings.NewReplacer(`\`, `\\`, `:`, `\:`, `,`, `\,`).Replace(s)
}

var errNoNewAPI = errors.New("kernel lacks fsopen or overlay lowerdir+")

// mountOverlay mounts an overlay of lowers (top-most first) with upper and
// work on target.
func mountOverlay(lowers []string, upper, work, target string) error {
	err := fsmountOverlay(lowers, upper, work, target)
	if !errors.Is(err, errNoNewAPI) {
		return err
	}
	return legacyMountOverlay(lowers, upper, work, target)
}

func legacyMountOverlay(lowers []string, upper, work, target string) error {
	data := strings.Join(overlayOptions(lowers, upper, work), ",")
	if len(data) >= os.Getpagesize() {
		return fmt.Errorf("overlay options for %d layers exceed a page, and the kernel lacks lowerdir+: %w",
			len(lowers), errdefs.ErrFailedPrecondition)
	}
	if err := unix.Mount("overlay", target, "overlay", 0, data); err != nil {
		return &os.PathError{Op: "mount overlay", Path: target, Err: err}
	}
	return nil
}

func fsmountOverlay(lowers []string, upper, work, target string) error {
	return fsmountOverlayWith(func(fsfd int) error {
		for i, l := range lowers {
			if err := unix.FsconfigSetString(fsfd, "lowerdir+", l); err != nil {
				msg := fsLog(fsfd)
				if i == 0 && errors.Is(err, unix.EINVAL) && strings.Contains(msg, "Unknown parameter") {
					return errNoNewAPI // before Linux 6.8
				}
				return fmt.Errorf("fsconfig lowerdir+=%s: %w (%s)", l, err, msg)
			}
		}
		return nil
	}, upper, work, target)
}

// fsmountOverlayWith mounts an overlay whose lower dirs setLowers gives the
// fs context, with upper and work, on target; an empty target only checks
// that the overlay can be made.
func fsmountOverlayWith(setLowers func(fsfd int) error, upper, work, target string) error {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if errors.Is(err, unix.ENOSYS) {
		return errNoNewAPI
	}
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
	if err := set("upperdir", upper); err != nil {
		return err
	}
	if err := set("workdir", work); err != nil {
		return err
	}
	if err := set("index", "off"); err != nil {
		return err
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fsError(fsfd, "create overlay", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
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

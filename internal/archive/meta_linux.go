package archive

import (
	"archive/tar"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

const paxXattr = "SCHILY.xattr."

// Order matters below: chown clears setuid/setgid bits and file
// capabilities, so the mode comes after it and xattrs (security.capability)
// last.

// fdMeta sets owner, mode and xattrs on an open file or directory.
func (a *applier) fdMeta(fd int, hdr *tar.Header) error {
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown %s: %w", hdr.Name, err)
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode)&0o7777); err != nil {
		return fmt.Errorf("chmod %s: %w", hdr.Name, err)
	}
	return setXattrs(hdr, func(name string, value []byte) error {
		return unix.Fsetxattr(fd, name, value, 0)
	})
}

// pathMeta sets owner, mode (when chmod is set; symlinks have none), xattrs
// and times on base in dfd without following it. base was just created by
// this applier, so it is known not to be a symlink when chmod is set.
func (a *applier) pathMeta(dfd int, base string, hdr *tar.Header, chmod bool) error {
	if err := unix.Fchownat(dfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "lchown", Path: hdr.Name, Err: err}
	}
	if chmod {
		if err := unix.Fchmodat(dfd, base, uint32(hdr.Mode)&0o7777, 0); err != nil {
			return &os.PathError{Op: "chmod", Path: hdr.Name, Err: err}
		}
	}
	// lsetxattr through the directory's /proc magic link: the link names
	// dfd itself, and the last component is not followed.
	p := fmt.Sprintf("/proc/self/fd/%d/%s", dfd, base)
	if err := setXattrs(hdr, func(name string, value []byte) error {
		return unix.Lsetxattr(p, name, value, 0)
	}); err != nil {
		return err
	}
	return a.setTimes(dfd, base, hdr)
}

// setXattrs applies the entry's SCHILY.xattr PAX records. Overlay's own
// attributes are never taken from a layer: a layer must not forge opaque
// directories or redirects except through the whiteout conventions.
func setXattrs(hdr *tar.Header, set func(string, []byte) error) error {
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattr)
		if !ok || strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.") {
			continue
		}
		err := set(name, []byte(v))
		if err == nil || name == "security.selinux" || errSkipped(err) {
			continue
		}
		return fmt.Errorf("setxattr %s on %s: %w", name, hdr.Name, err)
	}
	return nil
}

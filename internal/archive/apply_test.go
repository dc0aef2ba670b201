package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
)

func apply(t *testing.T, dir string, opts Options, ents ...ent) (Stats, error) {
	t.Helper()
	return Apply(context.Background(), dir, bytes.NewReader(tarball(t, ents...)), opts)
}

func lstat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func xattr(p, name string) (string, bool) {
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return "", false
	}
	return string(buf[:n]), true
}

func TestApplyPreservesMetadata(t *testing.T) {
	root := t.TempDir()
	d := dir("d")
	d.mode, d.uid, d.gid = 0o2750, 1000, 1001
	suid := file("d/suid", "#!/bin/true\n")
	suid.mode, suid.uid, suid.gid = 0o4755, 1, 2
	suid.xattrs = map[string]string{"user.note": "hi", "trusted.overlay.opaque": "y", "trusted.overlay.redirect": "/x", "security.selinux": "system_u:object_r:bin_t:s0"}
	sticky := dir("tmp")
	sticky.mode = 0o1777
	chr := ent{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3}
	blk := ent{name: "dev/loop9", typ: tar.TypeBlock, mode: 0o660, major: 7, minor: 9, gid: 6}
	fifo := ent{name: "run/fifo", typ: tar.TypeFifo, mode: 0o620}
	ln := symlink("d/link", "/etc/passwd")
	ln.uid = 5

	st, err := apply(t, root, Options{}, d, suid, sticky, chr, blk, fifo, ln, hardlink("d/hard", "/d/suid"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path      string
		mode      uint32
		uid, gid  uint32
		rdev      uint64
		wantNlink uint64
	}{
		{"d", unix.S_IFDIR | 0o2750, 1000, 1001, 0, 2},
		{"d/suid", unix.S_IFREG | 0o4755, 1, 2, 0, 2},
		{"d/hard", unix.S_IFREG | 0o4755, 1, 2, 0, 2},
		{"tmp", unix.S_IFDIR | 0o1777, 0, 0, 0, 2},
		{"dev/null", unix.S_IFCHR | 0o666, 0, 0, unix.Mkdev(1, 3), 1},
		{"dev/loop9", unix.S_IFBLK | 0o660, 0, 6, unix.Mkdev(7, 9), 1},
		{"run/fifo", unix.S_IFIFO | 0o620, 0, 0, 0, 1},
		{"d/link", unix.S_IFLNK | 0o777, 5, 0, 0, 1},
	} {
		s := lstat(t, filepath.Join(root, tc.path))
		if s.Mode != tc.mode || s.Uid != tc.uid || s.Gid != tc.gid || s.Rdev != tc.rdev || s.Nlink != tc.wantNlink {
			t.Errorf("%s: mode %o uid %d gid %d rdev %d nlink %d; want %o %d %d %d %d", tc.path,
				s.Mode, s.Uid, s.Gid, s.Rdev, s.Nlink, tc.mode, tc.uid, tc.gid, tc.rdev, tc.wantNlink)
		}
		if tc.path != "d/link" && s.Mtim.Sec != testTime.Unix() {
			t.Errorf("%s: mtime %d, want %d (directories after their contents)", tc.path, s.Mtim.Sec, testTime.Unix())
		}
	}
	if l, _ := os.Readlink(filepath.Join(root, "d/link")); l != "/etc/passwd" {
		t.Errorf("symlink target %q", l)
	}
	if data, _ := os.ReadFile(filepath.Join(root, "d/suid")); string(data) != "#!/bin/true\n" {
		t.Errorf("content %q", data)
	}
	p := filepath.Join(root, "d/suid")
	if v, ok := xattr(p, "user.note"); !ok || v != "hi" {
		t.Errorf("user.note = %q, %v", v, ok)
	}
	for _, name := range []string{"trusted.overlay.opaque", "trusted.overlay.redirect"} {
		if _, ok := xattr(p, name); ok {
			t.Errorf("%s was taken from the tar", name)
		}
	}
	// 8 named inodes (the hard link adds none) plus implicit dev/ and run/.
	if st.Inodes != 9 || st.Bytes != int64(len("#!/bin/true\n")) {
		t.Errorf("stats %+v", st)
	}
}

func TestApplyWhiteouts(t *testing.T) {
	root := t.TempDir()
	_, err := apply(t, root, Options{},
		file(".wh.gone", ""),
		dir("opq"), file("opq/.wh..wh..opq", ""), file("opq/kept", "k"),
		file("implied/.wh..wh..opq", ""),
		file(".wh..wh.plnk", ""), file(".wh..wh.plnk/123.456", "aufs"),
		file("same", "x"), file(".wh.same", ""),
		file("a/b/.wh.c", ""),
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"gone", "a/b/c"} {
		s := lstat(t, filepath.Join(root, p))
		if s.Mode&unix.S_IFMT != unix.S_IFCHR || s.Rdev != 0 {
			t.Errorf("%s is not a 0:0 whiteout: mode %o rdev %d", p, s.Mode, s.Rdev)
		}
	}
	for _, p := range []string{"opq", "implied"} {
		if v, ok := xattr(filepath.Join(root, p), opaqueXattr); v != "y" || !ok {
			t.Errorf("%s: opaque xattr %q %v", p, v, ok)
		}
	}
	if s := lstat(t, filepath.Join(root, "same")); s.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("a whiteout hid an entry of its own layer")
	}
	for _, p := range []string{".wh..wh.plnk", ".wh.gone", "opq/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s was extracted literally", p)
		}
	}
}

func TestApplyRejectsBadWhiteouts(t *testing.T) {
	for _, name := range []string{".wh.", "a/.wh..", "a/.wh...", ".wh.x/y"} {
		t.Run(name, func(t *testing.T) {
			_, err := apply(t, t.TempDir(), Options{}, file(name, ""))
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("err = %v, want invalid argument", err)
			}
		})
	}
}

func TestApplyReplaces(t *testing.T) {
	root := t.TempDir()
	_, err := apply(t, root, Options{},
		file("f2d", "x"), dir("f2d"), file("f2d/in", "y"),
		dir("d2f"), file("d2f/child", "z"), file("d2f", "now a file"),
		dir("merge"), file("merge/a", "a"), dir("merge"), file("merge/b", "b"),
		symlink("l2f", "f2d"), file("l2f", "plain"),
		file("twice", "first"), file("twice", "second"),
		dir("d2l"), file("d2l/x", "x"), symlink("d2l", "merge"), file("d2l/c", "through in-root link"),
	)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{
		"f2d/in": "y", "d2f": "now a file", "merge/a": "a", "merge/b": "b",
		"l2f": "plain", "twice": "second", "merge/c": "through in-root link",
	} {
		if data, err := os.ReadFile(filepath.Join(root, p)); err != nil || string(data) != want {
			t.Errorf("%s = %q, %v; want %q", p, data, err, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "f2d/in")); err != nil {
		t.Error(err)
	}
}

func TestApplyRootEntry(t *testing.T) {
	root := t.TempDir()
	r := dir("./")
	r.mode, r.uid = 0o750, 42
	if _, err := apply(t, root, Options{}, r, file("./x", "x")); err != nil {
		t.Fatal(err)
	}
	if s := lstat(t, root); s.Mode != unix.S_IFDIR|0o750 || s.Uid != 42 || s.Mtim.Sec != testTime.Unix() {
		t.Errorf("root: mode %o uid %d mtime %d", s.Mode, s.Uid, s.Mtim.Sec)
	}
	if _, err := apply(t, t.TempDir(), Options{}, file(".", "x")); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("file as root: err = %v", err)
	}
}

func TestApplyLimits(t *testing.T) {
	three := []ent{file("a", "1234"), file("b", "5678"), file("c", "9")}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		opts Options
		ents []ent
		want error
	}{
		{"entries", context.Background(), Options{MaxEntries: 2}, three, errdefs.ErrResourceExhausted},
		{"bytes", context.Background(), Options{MaxBytes: 8}, three, errdefs.ErrResourceExhausted},
		{"bytes exact", context.Background(), Options{MaxBytes: 9}, three, nil},
		{"cancelled", cancelled, Options{}, three, context.Canceled},
		{"no devices", context.Background(), Options{NoDevices: true},
			[]ent{{name: "null", typ: tar.TypeChar, major: 1, minor: 3}}, errdefs.ErrPermissionDenied},
		{"no devices allows fifos and whiteouts", context.Background(), Options{NoDevices: true},
			[]ent{{name: "p", typ: tar.TypeFifo}, file(".wh.x", "")}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Apply(tc.ctx, t.TempDir(), bytes.NewReader(tarball(t, tc.ents...)), tc.opts)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestApplyTruncatedTar(t *testing.T) {
	data := tarball(t, file("a", "some content here"))
	_, err := Apply(context.Background(), t.TempDir(), bytes.NewReader(data[:520]), Options{})
	if err == nil {
		t.Fatal("truncated layer applied without error")
	}
}

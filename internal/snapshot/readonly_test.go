package snapshot

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestReadOnlySnapshots(t *testing.T) {
	s := openStore(t)
	a, b := chain("a"), chain("a/b")
	mustUnpack(t, s, a, layer(t, "x=a", "y=a", "dir/"))
	mustUnpack(t, s, b, layer(t, "x=b", ".wh.y"))
	owner := "c1"
	if _, err := s.PrepareRootfs(owner, []digest.Digest{a}); err != nil {
		t.Fatal(err)
	}
	cleanupRootfs(t, s, owner)

	tests := []struct {
		name   string
		chain  []digest.Digest
		want   map[string]string // path -> content; "" means absent
		subdir string
	}{
		{"two layers", []digest.Digest{a, b}, map[string]string{"x": "b", "y": ""}, "dir"},
		// Overlay refuses one lower dir without an upper: the empty bottom
		// dir makes one-layer images work.
		{"one layer", []digest.Digest{a}, map[string]string{"x": "a", "y": "a"}, "dir"},
		{"no layers", nil, map[string]string{"x": ""}, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := VolumeKey(owner, i)
			if err := s.PrepareReadOnly(key, tt.chain); err != nil {
				t.Fatal(err)
			}
			if err := s.PrepareReadOnly(key, tt.chain); !errors.Is(err, errdefs.ErrAlreadyExists) {
				t.Errorf("second prepare: err = %v, want ErrAlreadyExists", err)
			}
			target, err := s.MountReadOnly(key)
			if err != nil {
				t.Fatal(err)
			}
			again, err := s.MountReadOnly(key)
			if err != nil || again != target {
				t.Fatalf("second mount = %q, %v", again, err)
			}
			if n := mountsAt(t, target); n != 1 {
				t.Errorf("%d mounts stacked on %s, want 1", n, target)
			}
			for p, want := range tt.want {
				got, ok := readMerged(t, target, p)
				if want == "" && ok || want != "" && got != want {
					t.Errorf("%s = %q (present %v), want %q", p, got, ok, want)
				}
			}
			if err := os.WriteFile(filepath.Join(target, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
				t.Errorf("write: err = %v, want EROFS", err)
			}
			if tt.subdir != "" {
				if err := os.Mkdir(filepath.Join(target, tt.subdir, "sub"), 0o755); !errors.Is(err, unix.EROFS) {
					t.Errorf("mkdir below %s: err = %v, want EROFS", tt.subdir, err)
				}
			}
		})
	}

	keys, err := s.ListReadOnly(owner)
	if err != nil || len(keys) != len(tests) {
		t.Fatalf("ListReadOnly = %v, %v", keys, err)
	}
	if rootfs, _ := s.ListRootfs(); !slices.Equal(rootfs, []string{owner}) {
		t.Errorf("ListRootfs = %v: read-only snapshots must not look like orphan rootfs", rootfs)
	}
	if other, _ := s.ListReadOnly("c"); len(other) != 0 {
		t.Errorf("ListReadOnly(c) = %v: a key prefix is not an owner", other)
	}

	// Removing the owner's rootfs removes its volumes, mounted or not.
	if err := s.RemoveRootfs(owner); err != nil {
		t.Fatal(err)
	}
	if keys, _ := s.ListReadOnly(owner); len(keys) != 0 {
		t.Errorf("after RemoveRootfs: volumes %v remain", keys)
	}
	if n := mountsAt(t, s.volumesDir()); n != 0 {
		t.Errorf("%d mounts remain below %s", n, s.volumesDir())
	}
	if !s.Exists(a) || !s.Exists(b) {
		t.Errorf("removing a volume reached into its layers")
	}
	if err := s.RemoveReadOnly(VolumeKey(owner, 0)); err != nil {
		t.Errorf("remove absent: %v", err)
	}
}

func TestReadOnlySnapshotErrors(t *testing.T) {
	s := openStore(t)
	a := chain("a")
	mustUnpack(t, s, a, layer(t, "x=a"))
	if err := s.PrepareReadOnly("c1-vol0", []digest.Digest{chain("absent")}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing layer: err = %v", err)
	}
	if err := s.PrepareReadOnly("../x", []digest.Digest{a}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad key: err = %v", err)
	}
	if _, err := s.MountReadOnly("c1-vol9"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("mount unprepared: err = %v", err)
	}
}

func TestLegacyReadOnlyMount(t *testing.T) {
	s := openStore(t)
	a, b := chain("a"), chain("a/b")
	mustUnpack(t, s, a, layer(t, "x=a"))
	mustUnpack(t, s, b, layer(t, "x=b"))
	key := VolumeKey("c1", 0)
	if err := s.PrepareReadOnly(key, []digest.Digest{a, b}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.RemoveReadOnly(key) })
	s.lowerdirPlus = func() bool { return false }
	target, err := s.MountReadOnly(key)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := readMerged(t, target, "x"); got != "b" {
		t.Errorf("x = %q", got)
	}
	if err := os.WriteFile(filepath.Join(target, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write: err = %v, want EROFS", err)
	}
}

// mountsAt counts the mounts at or below dir in this process's mount table.
func mountsAt(t *testing.T, dir string) int {
	t.Helper()
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(info), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			n++
		}
	}
	return n
}

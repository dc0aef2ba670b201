package snapshot

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/userns"
)

func owner(t *testing.T, path string) (uint32, uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid
}

// A user-namespaced pod's rootfs: the image's files read with the pod's
// host ids (so as their own owners inside), whiteouts still hide, the
// upper dir's root belongs to the pod's root, and a remount maps once.
func TestMountRootfsMapped(t *testing.T) {
	s := openStore(t)
	letThrough(t, s.root)
	l1, l2 := chain("idmap-1"), chain("idmap-2")
	mustUnpack(t, s, l1, layer(t, "etc/", "etc/os-release=berth", "gone=x"))
	mustUnpack(t, s, l2, layer(t, ".wh.gone", "app=2"))
	m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 300000, Size: 65536}}
	mappings := userns.Mappings{UIDs: m, GIDs: m}
	if _, err := s.PrepareRootfs("c1", []digest.Digest{l1, l2}); err != nil {
		t.Fatal(err)
	}
	cleanupRootfs(t, s, "c1")
	if !kernelAtLeast(6, 13) {
		// Before 6.13 overlay takes no layers as fds: the pod gets the reason.
		_, err := s.MountRootfsMapped("c1", mappings)
		if !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Fatalf("on kernel %s: err = %v, want a failed precondition", kernelRelease(), err)
		}
		t.Logf("on kernel %s: %v", kernelRelease(), err)
		return
	}
	for range 2 { // a second call finds it mounted
		merged, err := s.MountRootfsMapped("c1", mappings)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"etc/os-release", "app", "etc"} {
			if uid, gid := owner(t, filepath.Join(merged, f)); uid != 300000 || gid != 300000 {
				t.Errorf("%s owned by %d:%d, want 300000:300000", f, uid, gid)
			}
		}
		if uid, _ := owner(t, merged); uid != 300000 {
			t.Errorf("rootfs / owned by %d, want 300000", uid)
		}
		if _, err := os.Lstat(filepath.Join(merged, "gone")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("whiteout lost: %v", err)
		}
	}
	// Remounted after an unmount, the upper root is not mapped twice.
	if err := s.UnmountRootfs("c1"); err != nil {
		t.Fatal(err)
	}
	merged, err := s.MountRootfsMapped("c1", mappings)
	if err != nil {
		t.Fatal(err)
	}
	if uid, _ := owner(t, merged); uid != 300000 {
		t.Errorf("rootfs / owned by %d after a remount, want 300000", uid)
	}
	// The layers stay as they were on disk, and no id-mapped layer mount
	// is left in the mount table.
	if uid, _ := owner(t, filepath.Join(s.diffDir(l1), "etc/os-release")); uid != 0 {
		t.Errorf("layer file chowned to %d", uid)
	}
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var under []string
	for _, line := range strings.Split(string(info), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], s.root) {
			under = append(under, f[4])
		}
	}
	if len(under) != 1 || under[0] != merged {
		t.Errorf("mounts under the store %q, want the rootfs only", under)
	}
}

func TestMountRootfsMappedErrors(t *testing.T) {
	s := openStore(t)
	m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 300000, Size: 65536}}
	if _, err := s.MountRootfsMapped("absent", userns.Mappings{UIDs: m, GIDs: m}); err == nil {
		t.Error("mounted an unprepared rootfs")
	}
	if _, err := s.MountRootfsMapped("../x", userns.Mappings{UIDs: m, GIDs: m}); err == nil {
		t.Error("accepted a bad key")
	}
}

// A kernel of 6.13+ (this machine's 6.18) and its filesystems support what
// the probe asks, once the directories let a pod's root through; an older
// one (the test VM's 6.1) is refused with the reason.
func TestProbeIDMapped(t *testing.T) {
	dir := t.TempDir()
	if err := ProbeIDMapped(dir); !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), filepath.Dir(dir)+" (mode 0700)") {
		t.Fatalf("probe under a 0700 temp dir: %v, want an error naming the 0700 dir", err)
	}
	letThrough(t, dir)
	err := ProbeIDMapped(dir)
	if !kernelAtLeast(6, 13) {
		if !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Fatalf("probe on kernel %s: %v, want a failed precondition", kernelRelease(), err)
		}
		t.Logf("on kernel %s: %v", kernelRelease(), err)
	} else if err != nil {
		t.Fatalf("probe: %v", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("probe left %v behind", left)
	}
}

// letThrough makes dir and the test's temp dirs above it searchable by
// others, as a node's /var/lib/berth is.
func letThrough(t *testing.T, dir string) {
	t.Helper()
	for p := dir; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, fi.Mode().Perm()|0o011); err != nil {
			t.Fatal(err)
		}
	}
}

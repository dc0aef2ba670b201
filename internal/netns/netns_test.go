package netns

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/testsupport"
)

// testDir is a pin dir that is unmounted (New bind-mounts it onto itself)
// before t.TempDir removes it.
func testDir(t *testing.T) string {
	t.Helper()
	testsupport.Require(t, os.Geteuid() == 0, "needs root")
	dir := filepath.Join(t.TempDir(), "netns")
	t.Cleanup(func() {
		ids, _ := List(dir)
		for _, id := range ids {
			_ = Remove(filepath.Join(dir, id))
		}
		for unix.Unmount(dir, unix.MNT_DETACH) == nil {
		}
	})
	return dir
}

// mountsAt lists the mount points in /proc/self/mountinfo at or under dir.
func mountsAt(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	return out
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestLifecycle(t *testing.T) {
	dir := testDir(t)
	hostNS := inode(t, "/proc/self/ns/net")

	path, err := New(dir, "pod1")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := Pinned(path); err != nil || !ok {
		t.Fatalf("Pinned(%s) = %v, %v; want true", path, ok, err)
	}
	if inode(t, path) == hostNS {
		t.Fatal("pin is the host namespace")
	}
	if got := mountsAt(t, dir); len(got) != 2 { // dir itself + the pin
		t.Fatalf("mounts under %s = %v, want dir and one pin", dir, got)
	}
	if _, err := New(dir, "pod1"); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("second New = %v, want ErrAlreadyExists", err)
	}

	var inside uint64
	var ifaces []net.Interface
	err = Do(path, func() error {
		inside = inode(t, "/proc/thread-self/ns/net")
		ifaces, err = net.Interfaces()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if inside != inode(t, path) {
		t.Fatalf("Do ran in netns %d, want %d", inside, inode(t, path))
	}
	if len(ifaces) != 1 || ifaces[0].Name != "lo" {
		t.Fatalf("interfaces in new netns = %v, want lo only", ifaces)
	}
	if inode(t, "/proc/thread-self/ns/net") != hostNS {
		t.Fatal("caller's thread changed namespace")
	}
	sentinel := errors.New("boom")
	if err := Do(path, func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Fatalf("Do error = %v, want fn's error", err)
	}

	if ids, err := List(dir); err != nil || len(ids) != 1 || ids[0] != "pod1" {
		t.Fatalf("List = %v, %v", ids, err)
	}
	for i := 0; i < 2; i++ { // idempotent
		if err := Remove(path); err != nil {
			t.Fatalf("Remove #%d: %v", i+1, err)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin file still there: %v", err)
	}
	if got := mountsAt(t, dir); len(got) != 1 || got[0] != dir {
		t.Fatalf("mounts after Remove = %v, want only %s", got, dir)
	}
	if err := Do(path, func() error { return nil }); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Do on removed netns = %v, want ErrNotFound", err)
	}
	if ids, _ := List(dir); len(ids) != 0 {
		t.Fatalf("List after Remove = %v", ids)
	}
}

// An unmounted pin file (what a reboot leaves when /run is not a tmpfs) is
// not pinned, cannot be entered, and Remove cleans it.
func TestStalePin(t *testing.T) {
	dir := testDir(t)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "stale")
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if ok, err := Pinned(path); err != nil || ok {
		t.Fatalf("Pinned(stale) = %v, %v", ok, err)
	}
	if err := Do(path, func() error { return nil }); err == nil {
		t.Fatal("Do entered a plain file")
	}
	if err := Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := Remove(filepath.Join(dir, "never-existed")); err != nil {
		t.Fatal(err)
	}
}

func TestInvalidID(t *testing.T) {
	dir := testDir(t)
	for _, id := range []string{"", ".", "..", "a/b", ".hidden", "x\x00"} {
		if _, err := New(dir, id); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("New(%q) = %v, want ErrInvalidArgument", id, err)
		}
	}
}

// Concurrent first uses of a dir bind it onto itself once, not once each.
func TestConcurrentNew(t *testing.T) {
	dir := testDir(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = New(dir, fmt.Sprintf("p%d", i))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	dirMounts := 0
	for _, m := range mountsAt(t, dir) {
		if m == dir {
			dirMounts++
		}
	}
	if dirMounts != 1 {
		t.Fatalf("%s mounted %d times, want 1", dir, dirMounts)
	}
	ids, _ := List(dir)
	for _, id := range ids {
		if err := Remove(filepath.Join(dir, id)); err != nil {
			t.Fatal(err)
		}
	}
	if got := mountsAt(t, dir); len(got) != 1 {
		t.Fatalf("mounts left: %v", got)
	}
}

// Pin keeps an existing namespace (the pause's, in a user-namespaced pod)
// alive at <dir>/<id>, with New's rule for an id already pinned.
func TestPinExisting(t *testing.T) {
	dir := testDir(t)
	src, err := New(dir, "made-elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	path, err := Pin(dir, "pod1", src)
	if err != nil {
		t.Fatal(err)
	}
	if inode(t, path) != inode(t, src) {
		t.Error("the pin holds another namespace")
	}
	if ok, err := Pinned(path); err != nil || !ok {
		t.Errorf("Pinned = %v, %v", ok, err)
	}
	if _, err := Pin(dir, "pod1", src); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("second Pin: %v, want ErrAlreadyExists", err)
	}
	if _, err := Pin(dir, "pod2", filepath.Join(dir, "absent")); err == nil {
		t.Error("pinned a missing source")
	}
	if _, err := os.Stat(filepath.Join(dir, "pod2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed Pin left its file: %v", err)
	}
	if err := Remove(path); err != nil {
		t.Fatal(err)
	}
}

package snapshot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/testsupport"
)

func TestSpareRootfs(t *testing.T) {
	testsupport.Require(t, os.Geteuid() == 0, "mounting needs root")
	refillDelay = 0
	s := openStore(t)
	t.Cleanup(func() {
		s.KeepSpares(0)
		s.waitSpares()
	})
	settled := func(n int) func() bool {
		return func() bool {
			s.spares.mu.Lock()
			defer s.spares.mu.Unlock()
			return len(s.spares.ready) == n && !s.spares.filling
		}
	}
	spares := func() []string {
		entries, _ := os.ReadDir(s.tmpDir())
		var names []string
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), SpareDirPrefix) {
				t.Errorf("tmp dir holds %s", e.Name())
			}
			names = append(names, e.Name())
		}
		return names
	}
	s.KeepSpares(2)
	testsupport.PollUntil(t, "two spares", 10*time.Second, settled(2))
	if n := len(spares()); n != 2 {
		t.Fatalf("%d spares in the tmp dir", n)
	}

	id := chain("base")
	mustUnpack(t, s, id, layer(t, "etc/", "etc/os=base"))
	mountOne := func(key string) string {
		t.Helper()
		if _, err := s.PrepareRootfs(key, []digest.Digest{id}); err != nil {
			t.Fatal(err)
		}
		target, err := s.MountRootfs(key)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := readMerged(t, target, "etc/os"); got != "base" {
			t.Fatalf("%s: etc/os = %q", key, got)
		}
		return target
	}
	target := mountOne("c1")
	testsupport.PollUntil(t, "the taken spare replaced", 10*time.Second, settled(2))
	// What the container leaves on its root goes with it.
	if err := os.WriteFile(filepath.Join(target, "written"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// An attribute on the container's "/" lands on the upper dir.
	if err := unix.Setxattr(target, "user.berth-test", []byte("c1"), 0); err != nil {
		t.Fatal(err)
	}
	s.spares.mu.Lock()
	s.spares.target = 3 // room for c1's directories (not filled: no refill runs)
	s.spares.mu.Unlock()
	if err := s.RemoveRootfs("c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.keyDir("c1")); !os.IsNotExist(err) {
		t.Fatalf("c1 still in view: %v", err)
	}
	testsupport.PollUntil(t, "c1 recycled", 10*time.Second, settled(3))
	recycled := filepath.Join(s.tmpDir(), SpareDirPrefix+"c1")
	if _, err := os.Stat(filepath.Join(recycled, "upper")); err != nil {
		t.Fatalf("c1 not recycled: %v", err)
	}
	if _, err := unix.Getxattr(filepath.Join(recycled, "upper"), "user.berth-test", make([]byte, 16)); err != unix.ENODATA {
		t.Errorf("the recycled rootfs kept the container's upper dir (xattr: %v)", err)
	}
	for _, d := range []string{"upper", "work", "merged"} {
		if entries, _ := os.ReadDir(filepath.Join(recycled, d)); len(entries) != 0 {
			t.Errorf("recycled %s holds %d entries", d, len(entries))
		}
	}
	// The next rootfs, made from whichever spare, starts clean.
	for _, key := range []string{"c2", "c3", "c4", "c5"} {
		target := mountOne(key)
		cleanupRootfs(t, s, key)
		if _, err := os.Stat(filepath.Join(target, "written")); !os.IsNotExist(err) {
			t.Fatalf("%s sees a file c1 wrote: %v", key, err)
		}
	}
	// Without spares, a removal removes.
	s.KeepSpares(0)
	s.waitSpares()
	if err := s.RemoveRootfs("c2"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.tmpDir(), SpareDirPrefix+"c2")); !os.IsNotExist(err) {
		t.Errorf("c2 kept as a spare beyond the target: %v", err)
	}
}

// Open removes spares a previous process left, with the other tmp leftovers.
func TestSparesSweptAtOpen(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	refillDelay = 0
	s.KeepSpares(1)
	testsupport.PollUntil(t, "a spare", 10*time.Second, func() bool {
		entries, _ := os.ReadDir(s.tmpDir())
		return len(entries) == 1
	})
	s.KeepSpares(0)
	s.waitSpares()
	s2, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(s2.tmpDir()); len(entries) != 0 {
		t.Fatalf("tmp dir after Open: %d entries", len(entries))
	}
}

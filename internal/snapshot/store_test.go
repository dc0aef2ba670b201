package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/testsupport"
)

func readMerged(t *testing.T, dir, p string) (string, bool) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, p))
	if errors.Is(err, os.ErrNotExist) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(data), true
}

func TestOverlayWhiteoutsAndOpaqueDirs(t *testing.T) {
	s := openStore(t)
	l1, l2, l3 := chain("l1"), chain("l1/l2"), chain("l1/l2/empty")
	mustUnpack(t, s, l1, layer(t, "etc/", "etc/a=a1", "etc/b=b1", "opq/", "opq/x=x", "keep=k", "gone/", "gone/deep=d"))
	mustUnpack(t, s, l2, layer(t, "etc/.wh.a", "opq/", "opq/.wh..wh..opq", "opq/y=y", "new=n", ".wh.gone"))
	mustUnpack(t, s, l3, layer(t))

	m, err := s.PrepareRootfs("c1", []digest.Digest{l1, l2, l3})
	if err != nil {
		t.Fatal(err)
	}
	cleanupRootfs(t, s, "c1")
	if m.Type != "overlay" || m.Source != "overlay" || !strings.Contains(m.Options[1], s.diffDir(l3)+":"+s.diffDir(l2)+":"+s.diffDir(l1)) {
		t.Errorf("mount %+v: want lowerdir top-most first", m)
	}
	target, err := s.MountRootfs("c1")
	if err != nil {
		t.Fatal(err)
	}
	if target != m.Target {
		t.Errorf("target %s, want %s", target, m.Target)
	}
	if again, err := s.MountRootfs("c1"); err != nil || again != target {
		t.Fatalf("second mount: %s, %v", again, err)
	}
	for p, want := range map[string]string{"etc/b": "b1", "opq/y": "y", "keep": "k", "new": "n"} {
		if got, ok := readMerged(t, target, p); !ok || got != want {
			t.Errorf("%s = %q, %v; want %q", p, got, ok, want)
		}
	}
	for _, p := range []string{"etc/a", "opq/x", "gone", "gone/deep"} {
		if _, err := os.Lstat(filepath.Join(target, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s visible through the overlay: %v", p, err)
		}
	}

	if err := os.WriteFile(filepath.Join(target, "written"), make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	u, err := s.RootfsUsage("c1")
	if err != nil || u.Bytes != 1000 || u.Inodes != 1 {
		t.Errorf("rootfs usage %+v, %v; want 1000 bytes, 1 inode", u, err)
	}
	for range 2 {
		if err := s.UnmountRootfs("c1"); err != nil {
			t.Fatal(err)
		}
	}
	if mounted, _ := isMounted(target); mounted {
		t.Fatal("still mounted after UnmountRootfs")
	}
	if keys, err := s.ListRootfs(); err != nil || !slices.Equal(keys, []string{"c1"}) {
		t.Errorf("ListRootfs = %v, %v", keys, err)
	}
	// RemoveRootfs of a mounted rootfs unmounts it first, and is idempotent.
	if _, err := s.MountRootfs("c1"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.RemoveRootfs("c1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Lstat(s.keyDir("c1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("rootfs dir left: %v", err)
	}
	if got, _ := readMerged(t, s.diffDir(l1), "keep"); got != "k" {
		t.Errorf("removing the rootfs damaged a layer")
	}
	if err := s.UnmountRootfs("c1"); err != nil {
		t.Errorf("unmount of removed rootfs: %v", err)
	}
}

func TestFiftyLayerChain(t *testing.T) {
	s := openStore(t)
	var ids []digest.Digest
	for i := range 50 {
		id := chain(fmt.Sprint("layer", i))
		mustUnpack(t, s, id, layer(t, fmt.Sprintf("f%d=%d", i, i), fmt.Sprintf("common=%d", i)))
		ids = append(ids, id)
	}
	m, err := s.PrepareRootfs("fifty", ids)
	if err != nil {
		t.Fatal(err)
	}
	cleanupRootfs(t, s, "fifty")
	if n := len(strings.Join(m.Options, ",")); n <= os.Getpagesize() {
		t.Logf("options are %d bytes: this test does not exercise the page limit", n)
	}
	target, err := s.MountRootfs("fifty")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := readMerged(t, target, "common"); got != "49" {
		t.Errorf("common = %q, want the top layer's 49", got)
	}
	for i := range 50 {
		if got, ok := readMerged(t, target, fmt.Sprint("f", i)); !ok || got != fmt.Sprint(i) {
			t.Errorf("f%d = %q, %v", i, got, ok)
		}
	}
}

func TestLegacyMountFallback(t *testing.T) {
	s := openStore(t)
	s.lowerdirPlus = func() bool { return false }
	a, b := chain("a"), chain("a/b")
	mustUnpack(t, s, a, layer(t, "x=a", "y=a"))
	mustUnpack(t, s, b, layer(t, "x=b", ".wh.y"))
	if _, err := s.PrepareRootfs("legacy", []digest.Digest{a, b}); err != nil {
		t.Fatal(err)
	}
	cleanupRootfs(t, s, "legacy")
	target, err := s.MountRootfs("legacy")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := readMerged(t, target, "x"); got != "b" {
		t.Errorf("x = %q", got)
	}
	if _, ok := readMerged(t, target, "y"); ok {
		t.Errorf("whiteout ignored")
	}
}

func TestPrepareRootfsErrors(t *testing.T) {
	s := openStore(t)
	a := chain("a")
	mustUnpack(t, s, a, layer(t, "x=1"))
	for _, tc := range []struct {
		key  string
		ids  []digest.Digest
		want error
	}{
		{"missing-layer", []digest.Digest{a, chain("nope")}, errdefs.ErrNotFound},
		{"bad/key", []digest.Digest{a}, errdefs.ErrInvalidArgument},
		{"..", []digest.Digest{a}, errdefs.ErrInvalidArgument},
		{"", []digest.Digest{a}, errdefs.ErrInvalidArgument},
		{"bad-digest", []digest.Digest{"sha256:../../x"}, errdefs.ErrInvalidArgument},
	} {
		if _, err := s.PrepareRootfs(tc.key, tc.ids); !errors.Is(err, tc.want) {
			t.Errorf("PrepareRootfs(%q, %v) = %v, want %v", tc.key, tc.ids, err, tc.want)
		}
	}
	if _, err := s.PrepareRootfs("dup", []digest.Digest{a}); err != nil {
		t.Fatal(err)
	}
	cleanupRootfs(t, s, "dup")
	if _, err := s.PrepareRootfs("dup", []digest.Digest{a}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("second prepare: %v", err)
	}
	if _, err := s.MountRootfs("absent"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("mount absent: %v", err)
	}
	if _, err := s.RootfsUsage("absent"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("usage absent: %v", err)
	}

	// No layers at all still mounts, over an empty lower dir.
	if _, err := s.PrepareRootfs("scratch", nil); err != nil {
		t.Fatal(err)
	}
	cleanupRootfs(t, s, "scratch")
	target, err := s.MountRootfs("scratch")
	if err != nil {
		t.Fatal(err)
	}
	if ents, err := os.ReadDir(target); err != nil || len(ents) != 0 {
		t.Errorf("scratch rootfs: %v, %v", ents, err)
	}
}

func TestUnpackFailuresLeaveNothing(t *testing.T) {
	errDigest := errors.New("digest mismatch")
	for _, tc := range []struct {
		name   string
		data   []byte
		commit func() error
		want   error
	}{
		{"commit fails", layer(t, "a=1"), func() error { return errDigest }, errDigest},
		{"escaping layer", layer(t, "../x=1"), noCommit, errdefs.ErrInvalidArgument},
		{"truncated", layer(t, "a=0123456789")[:520], noCommit, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			id := chain(tc.name)
			err := s.Unpack(context.Background(), id, bytes.NewReader(tc.data), tc.commit)
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if s.Exists(id) {
				t.Error("failed layer is visible")
			}
			if ids, _ := s.List(); len(ids) != 0 {
				t.Errorf("List = %v", ids)
			}
			if left, _ := os.ReadDir(s.tmpDir()); len(left) != 0 {
				t.Errorf("temp dirs left: %v", left)
			}
		})
	}
}

func TestUnpackReadsToEOFBeforeCommit(t *testing.T) {
	s := openStore(t)
	data := append(layer(t, "a=1"), make([]byte, 4096)...) // trailing padding
	r := bytes.NewReader(data)
	err := s.Unpack(context.Background(), chain("x"), r, func() error {
		if r.Len() != 0 {
			return fmt.Errorf("%d bytes unread at commit", r.Len())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestUnpackExistingDoesNotRead(t *testing.T) {
	s := openStore(t)
	id := chain("x")
	mustUnpack(t, s, id, layer(t, "a=1"))
	g := newGated(nil) // would block forever if read
	if err := s.Unpack(context.Background(), id, g, func() error { t.Error("commit called"); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(g.reads) != 0 {
		t.Error("existing layer's reader was read")
	}
}

func TestConcurrentUnpackSharesOneExtraction(t *testing.T) {
	s := openStore(t)
	id := chain("shared")
	data := layer(t, "a=1", "b=2")
	const n = 8
	readers := make([]*gatedReader, n)
	var commits int
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		readers[i] = newGated(data)
		wg.Go(func() {
			errs[i] = s.Unpack(context.Background(), id, readers[i], func() error {
				mu.Lock()
				commits++
				mu.Unlock()
				return nil
			})
		})
	}
	testsupport.PollUntil(t, "all callers to join one flight", 10*time.Second, func() bool {
		return s.flights.Waiters(id.String()) == n
	})
	for _, g := range readers {
		close(g.release)
	}
	wg.Wait()
	read := 0
	for i, g := range readers {
		if errs[i] != nil {
			t.Errorf("caller %d: %v", i, errs[i])
		}
		if len(g.reads) > 0 {
			read++
		}
	}
	if read != 1 || commits != 1 {
		t.Errorf("%d readers read, %d commits; want one extraction", read, commits)
	}
	if !s.Exists(id) {
		t.Error("layer missing")
	}
}

func TestUnpackWaiterCancellation(t *testing.T) {
	s := openStore(t)
	id := chain("slow")
	g := newGated(layer(t, "a=1"))
	first := make(chan error, 1)
	go func() { first <- s.Unpack(context.Background(), id, g, noCommit) }()
	<-g.reads // the extraction has started and is blocked reading

	// A second caller that gives up gets ctx.Err and does not stop the work.
	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error, 1)
	go func() { second <- s.Unpack(ctx, id, bytes.NewReader(nil), noCommit) }()
	testsupport.PollUntil(t, "second waiter", 10*time.Second, func() bool {
		return s.flights.Waiters(id.String()) == 2
	})
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("second: %v", err)
	}
	close(g.release)
	if err := <-first; err != nil || !s.Exists(id) {
		t.Fatalf("first: %v, exists %v", err, s.Exists(id))
	}

	// When the last waiter leaves, the extraction is cancelled.
	id2 := chain("abandoned")
	g2 := newGated(layer(t, "a=1", "b=2", "c=3"))
	ctx2, cancel2 := context.WithCancel(context.Background())
	only := make(chan error, 1)
	go func() { only <- s.Unpack(ctx2, id2, g2, noCommit) }()
	<-g2.reads
	cancel2()
	if err := <-only; !errors.Is(err, context.Canceled) {
		t.Fatalf("only waiter: %v", err)
	}
	close(g2.release)
	testsupport.PollUntil(t, "abandoned extraction to clean up", 10*time.Second, func() bool {
		left, _ := os.ReadDir(s.tmpDir())
		return len(left) == 0
	})
	if s.Exists(id2) {
		t.Error("abandoned layer became visible")
	}
}

func TestOpenRemovesCrashLeftovers(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	id := chain("kept")
	mustUnpack(t, s, id, layer(t, "a=1"))
	junk := filepath.Join(s.tmpDir(), "unpack-123", "diff", "half")
	if err := os.MkdirAll(filepath.Dir(junk), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(junk, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(s2.tmpDir()); len(left) != 0 {
		t.Errorf("leftovers: %v", left)
	}
	if !s2.Exists(id) {
		t.Error("a committed layer was cleaned away")
	}
}

func TestRemoveAndUsage(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	a, b := chain("a"), chain("b")
	mustUnpack(t, s, a, layer(t, "d/", "d/x=12345", "y=123"))      // 3 inodes, 8 bytes
	mustUnpack(t, s, b, layer(t, "deep/er/z=1234567890", ".wh.q")) // 4 inodes, 10 bytes
	want := Usage{Bytes: 18, Inodes: 7}
	if u, err := s.Usage(); err != nil || u != want {
		t.Errorf("Usage = %+v, %v; want %+v", u, err, want)
	}
	// From usage.json after a restart, and measured again when it is lost.
	if err := os.Remove(filepath.Join(s.layerDir(b), usageFile)); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := s2.Usage(); err != nil || u != want {
		t.Errorf("Usage after restart = %+v, %v; want %+v", u, err, want)
	}
	if ids, err := s2.List(); err != nil || len(ids) != 2 || !slices.Contains(ids, a) || !slices.Contains(ids, b) {
		t.Errorf("List = %v, %v", ids, err)
	}
	for range 2 {
		if err := s2.Remove(a); err != nil {
			t.Fatal(err)
		}
	}
	if err := s2.Remove(chain("never")); err != nil {
		t.Errorf("remove absent: %v", err)
	}
	if s2.Exists(a) {
		t.Error("removed layer exists")
	}
	if u, _ := s2.Usage(); u != (Usage{Bytes: 10, Inodes: 4}) {
		t.Errorf("Usage after remove = %+v", u)
	}
	if s2.Mountpoint() != root {
		t.Errorf("Mountpoint = %s", s2.Mountpoint())
	}
	if err := s2.Remove("sha256:nothex"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("remove invalid: %v", err)
	}
}

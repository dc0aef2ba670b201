package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
)

// lowerPaths are n layer dirs as the store names them (108 bytes each
// under a typical root).
func lowerPaths(n int) []string {
	out := make([]string, n)
	for i := range out {
		id := chain(fmt.Sprint("layer", i))
		out[i] = "/var/lib/berth/snapshots/layers/sha256-" + id.Encoded() + "/diff"
	}
	return out
}

// The rule for mount(2) without lowerdir+: absolute paths while they fit
// a page, else the short form, else a clear error.
func TestLegacyData(t *testing.T) {
	const dir = "/var/lib/berth/snapshots/rootfs/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	rw := func(n int) overlay {
		return overlay{lowers: lowerPaths(n), upper: dir + "/upper", work: dir + "/work"}
	}
	tests := []struct {
		name      string
		o         overlay
		page      int
		wantShort bool
		wantLen   int    // of data; 0: not checked
		wantIn    string // a piece of data
		wantErr   string // a piece of the error, which is ErrFailedPrecondition
	}{
		{name: "one layer, absolute", o: rw(1), page: 4096, wantIn: "lowerdir=/var/lib/berth/snapshots/layers/sha256-"},
		{name: "30 layers still fit", o: rw(30), page: 4096, wantIn: ",upperdir=" + dir + "/upper,"},
		{name: "50 layers go short", o: rw(50), page: 4096, wantShort: true,
			wantLen: len("index=off,lowerdir=,upperdir=upper,workdir=work") + 10*4 + 40*5 - 1},
		{name: "128 layers", o: rw(128), page: 4096, wantShort: true,
			wantIn: "index=off,lowerdir=l/0:l/1:l/2:", wantLen: len("index=off,lowerdir=,upperdir=upper,workdir=work") + 10*4 + 90*5 + 28*6 - 1},
		{name: "overlay's 500 layers fit a page short", o: rw(500), page: 4096, wantShort: true, wantIn: ":l/499,upperdir=upper,workdir=work"},
		{name: "501 layers are over overlay's limit", o: rw(501), page: 4096, wantErr: "overlay of 501 layers: overlayfs stacks at most 500"},
		{name: "read-only, short", o: overlay{lowers: lowerPaths(128)}, page: 4096, wantShort: true,
			wantLen: len("lowerdir=") + 10*4 + 90*5 + 28*6 - 1},
		{name: "read-only, absolute", o: overlay{lowers: lowerPaths(2)}, page: 4096, wantIn: "lowerdir=/var/"},
		{name: "even short does not fit a small page", o: rw(128), page: 512,
			wantErr: "overlay of 128 layers: even with short paths its mount options take 704 bytes, over the 511-byte page"},
		{name: "a ':' in a path is escaped", o: overlay{lowers: []string{"/a:b", "/c,d"}}, page: 4096, wantIn: `lowerdir=/a\:b:/c\,d`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, short, err := legacyData(tt.o, dir, tt.page)
			if tt.wantErr != "" {
				if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q (failed precondition)", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if short != tt.wantShort {
				t.Errorf("short = %v, want %v", short, tt.wantShort)
			}
			if len(data) >= tt.page {
				t.Errorf("data takes %d bytes, page %d", len(data), tt.page)
			}
			if tt.wantLen != 0 && len(data) != tt.wantLen {
				t.Errorf("len(data) = %d, want %d", len(data), tt.wantLen)
			}
			if !strings.Contains(data, tt.wantIn) {
				t.Errorf("data %.120q... lacks %q", data, tt.wantIn)
			}
		})
	}
}

// manyLayers unpacks n tiny layers: f<i> in layer i, and "common" in all
// (the top one's wins).
func manyLayers(tb testing.TB, s *Store, n int) []digest.Digest {
	tb.Helper()
	var ids []digest.Digest
	for i := range n {
		id := chain(fmt.Sprint("layer", i))
		data := layer(tb, fmt.Sprintf("f%d=%d", i, i), fmt.Sprintf("common=%d", i))
		if err := s.Unpack(context.Background(), id, bytes.NewReader(data), noCommit); err != nil {
			tb.Fatalf("unpack %s: %v", id, err)
		}
		ids = append(ids, id)
	}
	return ids
}

func checkLayers(t *testing.T, target string, n int) {
	t.Helper()
	if got, _ := readMerged(t, target, "common"); got != fmt.Sprint(n-1) {
		t.Errorf("common = %q, want the top layer's %d", got, n-1)
	}
	for i := range n {
		if got, ok := readMerged(t, target, fmt.Sprint("f", i)); !ok || got != fmt.Sprint(i) {
			t.Errorf("f%d = %q, %v", i, got, ok)
		}
	}
}

// An image of 128 layers mounts as a rootfs and as an image volume: with
// what the kernel has (lowerdir+ on 6.8+, the short form before), and with
// the mount(2) fallback forced.
func TestManyLayers(t *testing.T) {
	const n = 128
	for _, mode := range []string{"detected", "mount(2) forced"} {
		t.Run(mode, func(t *testing.T) {
			s := openStore(t)
			if mode != "detected" {
				s.lowerdirPlus = func() bool { return false }
			}
			t.Logf("kernel %s; lowerdir+: %v", kernelRelease(), s.lowerdirPlus())
			ids := manyLayers(t, s, n)
			m, err := s.PrepareRootfs("many", ids)
			if err != nil {
				t.Fatal(err)
			}
			cleanupRootfs(t, s, "many")
			if size := len(strings.Join(m.Options, ",")); size < os.Getpagesize() {
				t.Fatalf("absolute options take %d bytes: this test does not exercise the page limit", size)
			}
			target, err := s.MountRootfs("many")
			if err != nil {
				t.Fatal(err)
			}
			checkLayers(t, target, n)
			if opts := superOptions(t, target); !s.lowerdirPlus() && !strings.Contains(opts, "lowerdir=l/0:l/1:") {
				t.Errorf("mount(2) fallback: overlay options %.80q..., want the short form", opts)
			}
			if err := os.WriteFile(target+"/new", []byte("w"), 0o644); err != nil {
				t.Errorf("write to the rootfs: %v", err)
			}
			// Mounted again after an unmount (a restart of the container).
			if err := s.UnmountRootfs("many"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.MountRootfs("many"); err != nil {
				t.Fatalf("mount again: %v", err)
			}
			if got, _ := readMerged(t, target, "new"); got != "w" {
				t.Errorf("what the container wrote: %q", got)
			}

			vol := VolumeKey("many", 0)
			if err := s.PrepareReadOnly(vol, ids); err != nil {
				t.Fatal(err)
			}
			vtarget, err := s.MountReadOnly(vol)
			if err != nil {
				t.Fatal(err)
			}
			checkLayers(t, vtarget, n)
			if err := os.WriteFile(vtarget+"/new", nil, 0o644); !errors.Is(err, unix.EROFS) {
				t.Errorf("write to the volume: err = %v, want EROFS", err)
			}
		})
	}
}

// The probe agrees with the kernel's version: lowerdir+ came in 6.8.
func TestProbeLowerdirPlus(t *testing.T) {
	if got, want := ProbeLowerdirPlus(t.TempDir()), kernelAtLeast(6, 8); got != want {
		t.Errorf("probe says lowerdir+ %v on kernel %s", got, kernelRelease())
	}
}

// kernelAtLeast is for tests that check a probe against the version that
// brought the feature.
func kernelAtLeast(major, minor int) bool {
	var kmaj, kmin int
	fmt.Sscanf(kernelRelease(), "%d.%d", &kmaj, &kmin)
	return kmaj > major || kmaj == major && kmin >= minor
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// superOptions are the superblock options of the mount at target.
func superOptions(t *testing.T, target string) string {
	t.Helper()
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(info), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == target {
			return f[len(f)-1]
		}
	}
	t.Fatalf("%s is not in mountinfo", target)
	return ""
}

// What the mount(2) fallback costs a 128-layer rootfs, against lowerdir+:
// a thread of its own per mount, and the symlinks (made by the first mount
// of a rootfs, ~30 ms on this host's busy disk, only read back after).
// Measured with -benchtime 200x on the 6.18 host: lowerdir+ ~17 ms and
// short paths ~21 ms per mount and unmount.
func BenchmarkMountManyLayers(b *testing.B) {
	for _, mode := range []string{"lowerdir+", "mount(2) short paths"} {
		b.Run(mode, func(b *testing.B) {
			s, err := Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			if mode == "lowerdir+" && !s.lowerdirPlus() {
				// skip: platform
				b.Skip("kernel lacks lowerdir+")
			}
			s.lowerdirPlus = func() bool { return mode == "lowerdir+" }
			ids := manyLayers(b, s, 128)
			if _, err := s.PrepareRootfs("bench", ids); err != nil {
				b.Fatal(err)
			}
			defer s.RemoveRootfs("bench")
			b.ResetTimer()
			for range b.N {
				if _, err := s.MountRootfs("bench"); err != nil {
					b.Fatal(err)
				}
				if err := s.UnmountRootfs("bench"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package statedir

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/testsupport"
)

func TestPrepare(t *testing.T) {
	testsupport.Require(t, os.Getuid() == 0, "mounting needs root")
	for _, tc := range []struct {
		name    string
		opts    Options
		setUp   func(t *testing.T, dir string)
		mounted bool
		kept    []string // entries that must survive
		gone    []string // entries that must be gone (or hidden)
	}{
		{name: "absent", opts: Options{Tmpfs: true}, mounted: true},
		{name: "only a boot id", opts: Options{Tmpfs: true}, setUp: writeBootID("now"), mounted: true},
		{
			name: "state of an earlier boot", opts: Options{Tmpfs: true}, mounted: true,
			setUp: both(writeBootID("before"), touch("supervisor/containers/c1/container.json")),
			gone:  []string{"supervisor"},
		},
		{
			name: "state of this boot", opts: Options{Tmpfs: true},
			setUp: both(writeBootID("now"), touch("supervisor/supervisor.sock")),
			kept:  []string{"supervisor/supervisor.sock"},
		},
		{
			name: "state of an older berth", opts: Options{Tmpfs: true},
			setUp: touch("netns/pod1"), kept: []string{"netns/pod1"},
		},
		{name: "turned off", opts: Options{}, setUp: touch("x"), kept: []string{"x"}},
		{name: "a mount of its own", opts: Options{Tmpfs: true}, setUp: both(touch("x"), bindOnItself), kept: []string{"x"}},
		// Regression: socket activation used to keep every state dir on
		// disk, silently; only a socket inside it has to.
		{name: "socket activated, the socket inside", opts: Options{Tmpfs: true, Sockets: []string{"<dir>/berth.sock"}}, setUp: touch("berth.sock"), kept: []string{"berth.sock"}},
		{name: "socket activated, the socket elsewhere", opts: Options{Tmpfs: true, Sockets: []string{"<top>/berth.sock", "<dir>x/berth.sock"}}, mounted: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top := t.TempDir()
			dir := filepath.Join(top, "run")
			t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
			boot := filepath.Join(top, "boot_id")
			os.WriteFile(boot, []byte("now\n"), 0o644)
			if tc.setUp != nil {
				os.MkdirAll(dir, 0o711)
				tc.setUp(t, dir)
			}
			tc.opts.BootIDPath = boot
			for i, s := range tc.opts.Sockets {
				tc.opts.Sockets[i] = strings.NewReplacer("<dir>", dir, "<top>", top).Replace(s)
			}
			p, err := Prepare(dir, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if p.Mounted != tc.mounted || p.Memory != tc.mounted || onMemory(dir) != tc.mounted {
				t.Fatalf("placement %+v, on memory %v; want mounted %v", p, onMemory(dir), tc.mounted)
			}
			if !tc.mounted && p.Why == "" {
				t.Error("left on disk without a reason")
			}
			for _, k := range tc.kept {
				if _, err := os.Stat(filepath.Join(dir, k)); err != nil {
					t.Errorf("%s: %v", k, err)
				}
			}
			for _, g := range tc.gone {
				if _, err := os.Stat(filepath.Join(dir, g)); !os.IsNotExist(err) {
					t.Errorf("%s still there: %v", g, err)
				}
			}
			if id, _ := os.ReadFile(filepath.Join(dir, BootIDFile)); string(id) != "now\n" {
				t.Errorf("boot id file %q", id)
			}
			// A restarted berthd keeps what it has: no second mount.
			again, err := Prepare(dir, tc.opts)
			if err != nil || again.Mounted || again.Memory != tc.mounted {
				t.Errorf("second Prepare: %+v, %v", again, err)
			}
			if tc.mounted {
				// What the state dir held before the mount is gone from the
				// disk, not only hidden.
				unix.Unmount(dir, unix.MNT_DETACH)
				for _, g := range tc.gone {
					if _, err := os.Stat(filepath.Join(dir, g)); !os.IsNotExist(err) {
						t.Errorf("%s left on the disk under the mount: %v", g, err)
					}
				}
			}
		})
	}
}

func writeBootID(id string) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		if err := os.WriteFile(filepath.Join(dir, BootIDFile), []byte(id+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func touch(name string) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func bindOnItself(t *testing.T, dir string) {
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
}

func both(fs ...func(*testing.T, string)) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		for _, f := range fs {
			f(t, dir)
		}
	}
}

// TestSocketPaths checks that the sockets systemd would pass are named by
// their paths, and that other descriptors are passed over.
func TestSocketPaths(t *testing.T) {
	path := filepath.Join(t.TempDir(), "berth.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	abstract, err := net.Listen("unix", "@berth-statedir-test")
	if err != nil {
		t.Fatal(err)
	}
	defer abstract.Close()
	f, _ := l.(*net.UnixListener).File()
	defer f.Close()
	af, _ := abstract.(*net.UnixListener).File()
	defer af.Close()
	plain, _ := os.Open(os.DevNull)
	defer plain.Close()
	// Three descriptors in a row, as LISTEN_FDS passes them: dup them to a
	// free run of numbers.
	base := 900
	for i, src := range []*os.File{f, af, plain} {
		if err := unix.Dup2(int(src.Fd()), base+i); err != nil {
			t.Fatal(err)
		}
		defer unix.Close(base + i)
	}
	if got := socketPaths(base, 3); len(got) != 1 || got[0] != path {
		t.Errorf("socketPaths = %q, want [%q]", got, path)
	}
}

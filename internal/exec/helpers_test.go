package exec

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

	// Linked for libcontainer's re-exec of the test binary, as in berthd.
	_ "github.com/opencontainers/cgroups/devices"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
)

// init is libcontainer's re-exec hook: exec'd processes start as
// "<test binary> init" inside the container's namespaces.
func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
}

var testRootfs string // set once by TestMain, read-only afterwards

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("skipping exec tests: not root")
		return
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		fmt.Println("skipping exec tests: apt-get install busybox-static")
		return
	}
	dir, err := os.MkdirTemp("", "berth-exec-test-")
	if err != nil {
		panic(err)
	}
	testRootfs = filepath.Join(dir, "rootfs")
	if err := MakeBusyboxRootfs(testRootfs); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// MakeBusyboxRootfs is also what the streaming tests use; it lives in a
// _test file of this package and is copied there (test helpers are not
// shared across packages).
func MakeBusyboxRootfs(root string) error {
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc", "work"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	data, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		return err
	}
	for _, a := range []string{"sh", "echo", "sleep", "cat", "true", "id", "env", "pwd", "dd", "head", "tty", "stty", "yes", "seq", "ls"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(root, "etc", "notexec"), []byte("x"), 0o644)
}

func testSpec(id string) *specs.Spec {
	s := specconv.Example()
	s.Root.Path = testRootfs
	s.Root.Readonly = true
	s.Process.Terminal = false
	s.Process.Args = []string{"sleep", "1000"}
	s.Process.User = specs.User{UID: 1234, GID: 4321}
	s.Process.Env = []string{"PATH=/bin", "BERTH_TEST=exec-env"}
	s.Process.Cwd = "/work"
	s.Linux.CgroupsPath = "/berth-exec-test/" + id
	return s
}

// runLibcontainer starts a container running sleep with libcontainer in
// this process and removes it when the test ends.
func runLibcontainer(t *testing.T, id string) Target {
	t.Helper()
	root := t.TempDir()
	spec := testSpec(id)
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: id, Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	c, err := libcontainer.Create(root, id, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := &libcontainer.Process{Args: spec.Process.Args, Env: spec.Process.Env, Cwd: "/", Init: true}
	if err := c.Run(p); err != nil {
		c.Destroy()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Signal(syscall.SIGKILL)
		p.Wait()
		c.Destroy()
	})
	return Target{ID: id, Kind: supv1.RuntimeLibcontainer, RuntimeRoot: root, Spec: spec}
}

// runOCI starts the same container with the runc binary (detached).
func runOCI(t *testing.T, id string) Target {
	t.Helper()
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc not installed")
	}
	root, bundle := t.TempDir(), t.TempDir()
	spec := testSpec(id)
	data, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	// The detached init inherits runc's stdio: a file, not a pipe, or
	// waiting for runc would wait for the container.
	logf, err := os.Create(filepath.Join(bundle, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(runc, "--root", root, "run", "--detach", "--bundle", bundle, id)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logf.Name())
		t.Fatalf("runc run: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command(runc, "--root", root, "delete", "--force", id).Run() })
	return Target{ID: id, Kind: supv1.RuntimeOCI, RuntimePath: runc, RuntimeRoot: root, Spec: spec}
}

var kinds = []struct {
	name string
	run  func(*testing.T, string) Target
}{
	{"libcontainer", runLibcontainer},
	{"oci", runOCI},
}

func testExecer() *Execer {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	return New(l)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// buffer is a WriteCloser for Stream's outputs.
type buffer struct {
	mu     sync.Mutex
	b      strings.Builder
	closed bool
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// childCount counts our direct child processes, zombies included (an
// unreaped exec is a leak). Orphans of an exec'd tree belong to the
// container's init afterwards (a pid namespace's reaper), not to us.
func childCount() int {
	self := os.Getpid()
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(pid); ok && ppid == self {
			n++
		}
	}
	return n
}

func fdCount() int {
	entries, _ := os.ReadDir("/proc/self/fd")
	return len(entries)
}

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
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

	// Linked for libcontainer's re-exec of the test binary, as in berthd.
	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/proctree"
	"github.com/berth-cri/berth/internal/supervisor/client"
	"github.com/berth-cri/berth/internal/testsupport"
)

// testEnv is what TestMain prepares once: a busybox rootfs shared read-only
// by every test container, and a supervisor (built from this tree) that
// runs the libcontainer-kind containers and their execs.
var testEnv struct {
	rootfs string
	sup    *client.Client
	supPid int
}

func TestMain(m *testing.M) {
	if !testsupport.RequireMain(os.Geteuid() == 0, "exec tests need root") ||
		!testsupport.RequireMain(testsupport.HaveBusybox(), "exec tests need busybox: apt-get install busybox-static") {
		return
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "berth-exec-test-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	testEnv.rootfs = filepath.Join(dir, "rootfs")
	if err := testsupport.BusyboxRootfs(testEnv.rootfs); err != nil {
		panic(err)
	}
	bin, err := testsupport.BuildSupervisor(dir, false)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stateDir := filepath.Join(dir, "state")
	if testEnv.sup, err = client.EnsureRunning(ctx, bin, stateDir, client.WithCgroup("")); err != nil {
		fmt.Printf("start supervisor: %v\n", err)
		return 1
	}
	v, err := testEnv.sup.Version(ctx)
	if err != nil {
		fmt.Printf("supervisor version: %v\n", err)
		return 1
	}
	testEnv.supPid = v.Pid
	defer testsupport.StopSupervisor(v.Pid, v.KeeperPid)
	code := m.Run()
	if log, _ := os.ReadFile(filepath.Join(stateDir, "supervisor", "supervisor.log")); strings.Contains(string(log), "panic") {
		fmt.Printf("supervisor log:\n%s", log)
		code = 1
	}
	return code
}

func testSpec(id string) *specs.Spec {
	s := specconv.Example()
	s.Root.Path = testEnv.rootfs
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
	return runLibcontainerSpec(t, id, testSpec(id))
}

// runLibcontainerSpec is runLibcontainer with the container's spec.
func runLibcontainerSpec(t *testing.T, id string, spec *specs.Spec) Target {
	t.Helper()
	bundle := t.TempDir()
	data, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	if _, err := testEnv.sup.Create(ctx, id, supv1.CreateRequest{Bundle: bundle}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		testEnv.sup.Kill(ctx, id, syscall.SIGKILL, true)
		testEnv.sup.Wait(ctx, id)
		testEnv.sup.Delete(ctx, id)
	})
	if _, err := testEnv.sup.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	return Target{ID: id, Kind: supv1.RuntimeLibcontainer, Spec: func() (*specs.Spec, error) { return spec, nil }}
}

func runOCI(t *testing.T, id string) Target {
	t.Helper()
	runc, err := exec.LookPath("runc")
	testsupport.Require(t, err == nil, "runc not installed (apt-get install runc)")
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
	return Target{ID: id, Kind: supv1.RuntimeOCI, RuntimePath: runc, RuntimeRoot: root, Spec: func() (*specs.Spec, error) { return spec, nil }}
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
	return New(l, testEnv.sup)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// childCount counts the direct child processes of pid, zombies included
// (an unreaped exec is a leak). Orphans of an exec'd tree belong to the
// container's init afterwards (a pid namespace's reaper), not to its parent.
func childCount(pid int) int {
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := proctree.ParentOf(p); ok && ppid == pid {
			n++
		}
	}
	return n
}

func fdCount() int {
	entries, _ := os.ReadDir("/proc/self/fd")
	return len(entries)
}

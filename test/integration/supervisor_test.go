package integration

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/internal/harness"
)

// copyFile copies src to dst (a new inode), executable.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	tmp := dst + ".new"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	out.Close()
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// supervisorPid is the pid of the supervisor serving d.
func supervisorPid(t *testing.T, d *harness.Daemon) int {
	t.Helper()
	pid := d.SupervisorPID()
	if pid == 0 {
		t.Fatalf("no supervisor for %s", d.Dir)
	}
	return pid
}

// upgradablePod starts a berthd whose binaries are private copies in
// binDir (so a test may replace them), pulls busybox and runs a pod.
func upgradablePod(t *testing.T, name string) (e *podEnv, binDir string) {
	t.Helper()
	binDir = t.TempDir()
	berthd := harness.Binary(t)
	copyFile(t, berthd, filepath.Join(binDir, "berthd"))
	copyFile(t, filepath.Join(filepath.Dir(berthd), "berth-supervisor"), filepath.Join(binDir, "berth-supervisor"))
	return startPodEnv(t, name, "", filepath.Join(binDir, "berthd")), binDir
}

// TestSupervisorUpgradeKeepsContainers replaces the supervisor binary and
// restarts berthd, which upgrades the supervisor in place: same pid, the
// running container keeps running, its exit code is exact and its log has
// every line once.
func TestSupervisorUpgradeKeepsContainers(t *testing.T) {
	e, binDir := upgradablePod(t, "upgrade")
	d, pod, ctx := e.d, e.pod, context.Background()
	const lines = 150
	id := e.run(t, e.containerConfig("counter", "sh", "-c", fmt.Sprintf("for i in $(seq 1 %d); do echo n $i; sleep 0.01; done; exit 7", lines)))
	pidBefore := supervisorPid(t, d)
	// A created container's init (libcontainer's, waiting to be started)
	// runs with one P; its command will not see the variable.
	created, err := e.rt.CreateContainer(ctx, pod, e.containerConfig("created", "env"), e.podCfg)
	if err != nil {
		t.Fatalf("create: %v\n%s", err, d.Logs)
	}
	if env := procEnviron(t, waitingInit(t, pidBefore)); !slices.Contains(env, "GOMAXPROCS=1") {
		t.Errorf("the init's environment %q has no GOMAXPROCS=1", env)
	}
	if err := e.rt.StartContainer(ctx, created); err != nil {
		t.Fatal(err)
	}
	if st := e.waitExit(t, created); st.ExitCode != 0 || slices.Contains(logLines(t, st.LogPath), "stdout GOMAXPROCS=1") {
		t.Errorf("the container's command saw the inits' GOMAXPROCS (exit %d): %q", st.ExitCode, logLines(t, st.LogPath))
	}

	// A package upgrade: new supervisor binary on disk, berthd restarted.
	copyFile(t, filepath.Join(binDir, "berth-supervisor"), filepath.Join(binDir, "berth-supervisor"))
	d.Stop()
	d.Start()
	d.WaitReady()
	if !d.Logs.Contains("supervisor upgraded") {
		t.Errorf("berthd did not upgrade the supervisor:\n%s", d.Logs)
	}
	if pid := supervisorPid(t, d); pid != pidBefore {
		t.Errorf("supervisor pid %d after upgrade, was %d", pid, pidBefore)
	}
	// The upgraded supervisor has its own GOMAXPROCS (none here), not the
	// one its predecessor set for the inits.
	if _, set := os.LookupEnv("GOMAXPROCS"); !set && slices.ContainsFunc(procEnviron(t, pidBefore), func(kv string) bool { return strings.HasPrefix(kv, "GOMAXPROCS=") }) {
		t.Errorf("the upgraded supervisor started with the inits' GOMAXPROCS: %q", procEnviron(t, pidBefore))
	}
	e.rt = d.RuntimeClient()
	st := e.waitExit(t, id)
	if st.ExitCode != 7 {
		t.Errorf("exit code %d (%s), want 7", st.ExitCode, st.Reason)
	}
	got := logLines(t, st.LogPath)
	if len(got) != lines {
		t.Errorf("%d log lines, want %d", len(got), lines)
	}
	for i, l := range got {
		if l != fmt.Sprintf("stdout n %d", i+1) {
			t.Fatalf("line %d is %q", i+1, l)
		}
	}
	e.rt.StopPodSandbox(ctx, pod)
	e.rt.RemovePodSandbox(ctx, pod)
}

// TestSupervisorFailedUpgradeKeepsServing: a supervisor binary on disk
// that cannot be executed (a broken package, a file still being written)
// fails the in-place upgrade; berthd starts all the same with the
// supervisor that runs, and its containers keep running.
func TestSupervisorFailedUpgradeKeepsServing(t *testing.T) {
	e, binDir := upgradablePod(t, "badupgrade")
	d, pod, ctx := e.d, e.pod, context.Background()
	good := filepath.Join(t.TempDir(), "berth-supervisor")
	copyFile(t, filepath.Join(binDir, "berth-supervisor"), good)
	id := e.run(t, e.containerConfig("sleeper", "sleep", "1000"))
	pidBefore := supervisorPid(t, d)

	// An ELF header and nothing else: execve refuses it.
	bad := filepath.Join(binDir, "berth-supervisor.bad")
	if err := os.WriteFile(bad, append([]byte("\x7fELF"), make([]byte, 60)...), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(bad, filepath.Join(binDir, "berth-supervisor")); err != nil {
		t.Fatal(err)
	}
	d.Stop()
	d.Start()
	d.WaitReady()
	if !d.Logs.Contains("upgrading the supervisor in place failed") {
		t.Errorf("berthd did not report the failed upgrade:\n%s", d.Logs)
	}
	if pid := supervisorPid(t, d); pid != pidBefore {
		t.Errorf("supervisor pid %d, was %d: the old supervisor should serve on", pid, pidBefore)
	}
	e.rt = d.RuntimeClient()
	st, err := e.rt.ContainerStatus(ctx, id, false)
	if err != nil || st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container after the failed upgrade: %v %v", st.GetStatus().GetState(), err)
	}
	// The good binary back, for the cleanup's sake.
	copyFile(t, good, filepath.Join(binDir, "berth-supervisor"))
	e.rt.StopPodSandbox(ctx, pod)
	e.rt.RemovePodSandbox(ctx, pod)
}

// TestOCIRuntimeHandler runs a pod and a container through a RuntimeClass
// handler of type "oci" (Debian's runc binary), supervised the same way.
func TestOCIRuntimeHandler(t *testing.T) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatalf("runc is needed (hack/install-deps.sh installs it): %v", err)
	}
	d, reg, _ := newPodDaemon(t, fmt.Sprintf("[runtimes.runc-binary]\ntype = \"oci\"\nruntime_path = %q\n", runc))
	d.Start()
	d.WaitReady()
	rt, img := d.RuntimeClient(), d.ImageClient()
	ctx := context.Background()
	image := reg.Host + "/" + harness.BusyboxRepo
	if _, err := img.PullImage(ctx, &runtimeapi.ImageSpec{Image: image}, nil, nil); err != nil {
		t.Fatal(err)
	}
	podCfg := podConfig("ocipod")
	podCfg.LogDirectory = t.TempDir()
	pod, err := rt.RunPodSandbox(ctx, podCfg, "runc-binary")
	if err != nil {
		t.Fatalf("%v\n%s", err, d.Logs)
	}
	e := &podEnv{d: d, reg: reg, rt: rt, img: img, pod: pod, podCfg: podCfg, image: image}
	id := e.run(t, e.containerConfig("viarunc", "sh", "-c", "echo through runc; exit 4"))
	st := e.waitExit(t, id)
	if st.ExitCode != 4 || strings.Join(logLines(t, st.LogPath), "") != "stdout through runc" {
		t.Errorf("exit %d, logs %q", st.ExitCode, logLines(t, st.LogPath))
	}
	sst, _ := rt.PodSandboxStatus(ctx, pod, false)
	if sst.GetStatus().GetRuntimeHandler() != "runc-binary" {
		t.Errorf("runtime handler %q", sst.GetStatus().GetRuntimeHandler())
	}
	if err := rt.StopPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if err := rt.RemovePodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
}

// procEnviron is the environment process pid was executed with.
func procEnviron(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// waitingInit is the pid of the one child of the supervisor that is still
// libcontainer's init ("berth-supervisor init"): a created container's.
func waitingInit(t *testing.T, supervisor int) int {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var found []int
	for _, p := range stats {
		var pid, ppid int
		var comm, state string
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if _, err := fmt.Sscanf(string(b), "%d %s %s %d", &pid, &comm, &state, &ppid); err != nil || ppid != supervisor {
			continue
		}
		args, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if a := strings.Split(string(args), "\x00"); len(a) > 1 && a[1] == "init" {
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one waiting init below supervisor %d, found %v", supervisor, found)
	}
	return found[0]
}

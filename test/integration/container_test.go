package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/internal/harness"
)

// podEnv is a running pod daemon with one ready sandbox.
type podEnv struct {
	d      *harness.Daemon
	reg    *harness.Registry
	rt     internalapi.RuntimeService
	img    internalapi.ImageManagerService
	pod    string
	podCfg *runtimeapi.PodSandboxConfig
	image  string
}

func newPodEnv(t *testing.T, name string) *podEnv {
	t.Helper()
	return startPodEnv(t, name, "", "")
}

// startPodEnv starts a berthd (with extra config, and bin instead of the
// binary under test if set), pulls busybox and runs a pod, removed at the
// end of the test.
func startPodEnv(t *testing.T, name, extra, bin string) *podEnv {
	t.Helper()
	d, reg, _ := newPodDaemon(t, extra)
	if bin != "" {
		d.Bin = bin
	}
	d.Start()
	d.WaitReady()
	e := &podEnv{d: d, reg: reg, rt: d.RuntimeClient(), img: d.ImageClient(), podCfg: podConfig(name), image: reg.Host + "/" + harness.BusyboxRepo}
	e.podCfg.LogDirectory = t.TempDir()
	ctx := context.Background()
	if _, err := e.img.PullImage(ctx, &runtimeapi.ImageSpec{Image: e.image}, nil, nil); err != nil {
		t.Fatal(err)
	}
	pod, err := e.rt.RunPodSandbox(ctx, e.podCfg, "")
	if err != nil {
		t.Fatalf("%v\n%s", err, d.Logs)
	}
	e.pod = pod
	t.Cleanup(func() {
		e.rt.StopPodSandbox(context.Background(), pod)
		e.rt.RemovePodSandbox(context.Background(), pod)
	})
	return e
}

func (e *podEnv) containerConfig(name string, cmd ...string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: e.image},
		Command:  cmd,
		LogPath:  name + ".log",
		Labels:   map[string]string{"c": name},
		// As kubelet sends for every ordinary pod: a pid namespace of its own.
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
}

// run creates and starts a container and returns its id.
func (e *podEnv) run(t *testing.T, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	ctx := context.Background()
	id, err := e.rt.CreateContainer(ctx, e.pod, cfg, e.podCfg)
	if err != nil {
		t.Fatalf("create %s: %v\n%s", cfg.Metadata.Name, err, e.d.Logs)
	}
	if err := e.rt.StartContainer(ctx, id); err != nil {
		t.Fatalf("start %s: %v\n%s", cfg.Metadata.Name, err, e.d.Logs)
	}
	return id
}

// waitExit waits for the container to exit and returns its status.
func (e *podEnv) waitExit(t *testing.T, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	var st *runtimeapi.ContainerStatus
	harness.WaitFor(t, "container exit", 20*time.Second, func() bool {
		resp, err := e.rt.ContainerStatus(context.Background(), id, false)
		if err != nil {
			return false
		}
		st = resp.Status
		return st.State == runtimeapi.ContainerState_CONTAINER_EXITED
	})
	return st
}

// logLines parses a CRI log file into "stream message" lines, joining
// partial records as kubelet does. Many callers poll a log that is still
// being written, so an unterminated last record is left out, as kubelet's
// reader waits for its newline: each record is one write(2), but the kernel
// grows the file a page at a time, so a record that crosses a page boundary
// can be seen half-written.
func logLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data = data[:bytes.LastIndexByte(data, '\n')+1]
	var out []string
	var partial strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), " ", 4)
		if len(parts) < 3 {
			t.Fatalf("malformed log line %q", sc.Text())
		}
		if _, err := time.Parse(time.RFC3339Nano, parts[0]); err != nil {
			t.Fatalf("bad timestamp in %q", sc.Text())
		}
		msg := ""
		if len(parts) == 4 {
			msg = parts[3]
		}
		partial.WriteString(msg)
		if parts[2] == "F" {
			out = append(out, parts[1]+" "+partial.String())
			partial.Reset()
		}
	}
	return out
}

// memLimitCmd prints the memory limit of the container's cgroup as the
// container sees it: cgroup v1's memory.limit_in_bytes or v2's memory.max
// (its cgroup namespace's root).
const memLimitCmd = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"

func TestContainerSeesItsConfig(t *testing.T) {
	e := newPodEnv(t, "config")
	hostDir := t.TempDir()
	os.WriteFile(filepath.Join(hostDir, "data"), []byte("from-host"), 0o644)
	cfg := e.containerConfig("probe", "sh", "-c",
		"id -u; id -G; echo FOO=$FOO; cat /mnt/host/data; echo; pwd; "+memLimitCmd+"; "+
			"grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; touch /mnt/host/x 2>/dev/null && echo rw || echo ro; hostname")
	cfg.Envs = []*runtimeapi.KeyValue{{Key: "FOO", Value: []byte("bar")}}
	cfg.WorkingDir = "/tmp"
	cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/mnt/host", HostPath: hostDir, Readonly: true}}
	cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20}
	sc := cfg.Linux.SecurityContext
	sc.RunAsUser, sc.SupplementalGroups, sc.NoNewPrivs = &runtimeapi.Int64Value{Value: 33}, []int64{4000}, true
	// The second container of the image has its spec built from the
	// image's user files kept from the first, before its rootfs is mounted.
	var st *runtimeapi.ContainerStatus
	for _, name := range []string{"probe", "probe-again"} {
		cfg.Metadata.Name = name
		st = e.waitExit(t, e.run(t, cfg))
		if st.ExitCode != 0 || st.Reason != "Completed" {
			t.Errorf("%s: exit %d %q", name, st.ExitCode, st.Reason)
		}
		got := strings.Join(logLines(t, st.LogPath), "\n")
		for _, want := range []string{
			"stdout 33", "stdout 33 3000 4000", "stdout FOO=bar", "stdout from-host", "stdout /tmp",
			fmt.Sprintf("stdout %d", 64<<20), "stdout CapEff:\t0000000000000000", "stdout NoNewPrivs:\t1", "stdout ro", "stdout config",
		} {
			if !strings.Contains(got, want) {
				t.Errorf("%s: container output lacks %q:\n%s", name, want, got)
			}
		}
	}
	// The status echoes exactly the CRI mounts, the user and the image.
	if len(st.Mounts) != 1 || st.Mounts[0].ContainerPath != "/mnt/host" {
		t.Errorf("mounts %v", st.Mounts)
	}
	if st.User.GetLinux().GetUid() != 33 || st.ImageRef == "" || st.ImageId == "" || st.Image.GetImage() != e.image {
		t.Errorf("user %v image %v ref %q id %q", st.User, st.Image, st.ImageRef, st.ImageId)
	}
}

func TestContainerExitCodesAndStop(t *testing.T) {
	e := newPodEnv(t, "exits")
	ctx := context.Background()
	three := e.run(t, e.containerConfig("three", "sh", "-c", "echo out; echo err >&2; exit 3"))
	if st := e.waitExit(t, three); st.ExitCode != 3 || st.Reason != "Error" || st.FinishedAt == 0 {
		t.Errorf("exit 3: %+v", st)
	}
	// Two pipes: the order between stdout and stderr is not kept (as in containerd).
	if lines := logLines(t, filepath.Join(e.podCfg.LogDirectory, "three.log")); len(lines) != 2 || !slices.Contains(lines, "stdout out") || !slices.Contains(lines, "stderr err") {
		t.Errorf("logs %q", lines)
	}
	sleeper := e.run(t, e.containerConfig("sleeper", "sleep", "1000"))
	if err := e.rt.StopContainer(ctx, sleeper, 1); err != nil {
		t.Fatal(err)
	}
	st, _ := e.rt.ContainerStatus(ctx, sleeper, false)
	if st.Status.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.Status.ExitCode != 137 {
		// sleep as pid 1 ignores SIGTERM: SIGKILL after the timeout.
		t.Errorf("stopped sleeper: %+v", st.Status)
	}
	list, _ := e.rt.ListContainers(ctx, &runtimeapi.ContainerFilter{PodSandboxId: e.pod, State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}})
	if len(list) != 2 {
		t.Errorf("exited containers: %d", len(list))
	}
	for _, id := range []string{three, sleeper, strings.Repeat("cd", 32)} {
		if err := e.rt.StopContainer(ctx, id, 0); err != nil {
			t.Errorf("stop %s: %v", id, err)
		}
		if err := e.rt.RemoveContainer(ctx, id); err != nil {
			t.Errorf("remove %s: %v", id, err)
		}
	}
	if _, err := e.rt.ContainerStatus(ctx, three, false); status.Code(err) != codes.NotFound {
		t.Errorf("status of removed: %v", err)
	}
	// A container in a stopped pod cannot be created.
	e.rt.StopPodSandbox(ctx, e.pod)
	if _, err := e.rt.CreateContainer(ctx, e.pod, e.containerConfig("late", "true"), e.podCfg); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("create in stopped pod: %v", err)
	}
}

// TestBerthdKilledMidWorkload kills berthd with SIGKILL while containers
// write logs and exit, restarts it, and checks that states, exit codes,
// finish times and logs are exact.
func TestBerthdKilledMidWorkload(t *testing.T) {
	e := newPodEnv(t, "crash")
	const n = 6
	ids := make([]string, n)
	for i := range ids {
		// Container i writes numbered lines for a while, then exits with code i.
		ids[i] = e.run(t, e.containerConfig(fmt.Sprintf("w%d", i), "sh", "-c",
			fmt.Sprintf("for j in $(seq 1 %d); do echo line $j; sleep 0.02; done; exit %d", 20+i*15, i)))
	}
	time.Sleep(150 * time.Millisecond) // let them run; the kill lands mid-workload either way
	e.d.Cmd.Process.Signal(syscall.SIGKILL)
	<-e.d.Exited
	time.Sleep(1500 * time.Millisecond) // every container exits while berthd is down
	e.d.Start()
	e.d.WaitReady()
	e.rt = e.d.RuntimeClient()
	for i, id := range ids {
		st := e.waitExit(t, id)
		if st.ExitCode != int32(i) || st.FinishedAt == 0 || st.FinishedAt < st.StartedAt {
			t.Errorf("container %d: exit %d finished %d started %d reason %q", i, st.ExitCode, st.FinishedAt, st.StartedAt, st.Reason)
		}
		lines := logLines(t, st.LogPath)
		want := 20 + i*15
		if len(lines) != want {
			t.Errorf("container %d: %d log lines, want %d", i, len(lines), want)
		}
		for j, l := range lines {
			if l != fmt.Sprintf("stdout line %d", j+1) {
				t.Errorf("container %d: line %d is %q", i, j+1, l)
				break
			}
		}
	}
}

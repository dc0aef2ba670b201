package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/internal/harness"
)

// The systemd cgroup driver, on the platform real nodes run: systemd as
// PID 1 and a pure cgroup v2 hierarchy (the test VM, test/vm). berthd runs
// as a systemd service made from hack/systemd/berthd.service, as it would
// on a node, so that restarting and stopping the service is the real
// thing.

// requireSystemdNode skips the test unless systemd is init on cgroup v2.
func requireSystemdNode(t *testing.T) {
	t.Helper()
	comm, _ := os.ReadFile("/proc/1/comm")
	if strings.TrimSpace(string(comm)) != "systemd" {
		// skip: platform
		t.Skip("PID 1 is not systemd")
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		// skip: platform
		t.Skip("not a pure cgroup v2 hierarchy")
	}
}

// systemdEnv is a berthd run as a transient copy of berthd.service.
type systemdEnv struct {
	d     *harness.Daemon
	reg   *harness.Registry
	unit  string
	rt    internalapi.RuntimeService
	image string
}

// startSystemdEnv writes a unit from hack/systemd/berthd.service running
// the berthd under test with a test daemon's config, and starts it.
// Type=notify: systemctl start returns once berthd is ready.
func startSystemdEnv(t *testing.T, name string) *systemdEnv {
	t.Helper()
	d, reg, _ := newPodDaemon(t, `cgroup_driver = "systemd"`)
	e := &systemdEnv{d: d, reg: reg, unit: fmt.Sprintf("berthd-test-%s-%d.service", name, os.Getpid()),
		image: reg.Host + "/" + harness.BusyboxRepo}
	shipped, err := os.ReadFile("../../hack/systemd/berthd.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(shipped)
	unit = regexp.MustCompile(`(?m)^ExecStart=.*$`).ReplaceAllString(unit, fmt.Sprintf("ExecStart=%s --config %s", harness.Binary(t), d.Config))
	// No socket unit here (berthd makes its own socket), and no install.
	unit = regexp.MustCompile(`(?m)^(Requires=berthd.socket|WantedBy=.*)$`).ReplaceAllString(unit, "")
	path := filepath.Join("/run/systemd/system", e.unit)
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.removePods()
		systemctl(t, "stop", e.unit)
		os.Remove(path)
		exec.Command("systemctl", "daemon-reload").Run()
		exec.Command("systemctl", "reset-failed", e.unit).Run()
	})
	systemctl(t, "daemon-reload")
	e.start(t)
	return e
}

func (e *systemdEnv) start(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("systemctl", "start", e.unit).CombinedOutput(); err != nil {
		t.Fatalf("systemctl start %s: %v\n%s\n%s", e.unit, err, out, e.journal())
	}
	e.ready(t)
}

// ready waits for berthd's recovery, however it was started.
func (e *systemdEnv) ready(t *testing.T) {
	t.Helper()
	// The socket of a berthd that was killed or stopped stays behind:
	// wait for one that answers.
	harness.WaitFor(t, "berthd's socket", 30*time.Second, func() bool {
		c, err := net.Dial("unix", e.d.Socket)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	e.d.WaitReady()
	e.rt = e.d.RuntimeClient()
}

func (e *systemdEnv) journal() string {
	out, _ := exec.Command("journalctl", "--no-pager", "-n", "60", "-u", e.unit).CombinedOutput()
	return string(out)
}

func (e *systemdEnv) removePods() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pods, err := e.rt.ListPodSandbox(ctx, nil)
	if err != nil {
		return
	}
	for _, p := range pods {
		e.rt.StopPodSandbox(ctx, p.Id)
		e.rt.RemovePodSandbox(ctx, p.Id)
	}
}

func systemctl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("systemctl", args...).CombinedOutput()
	if err != nil {
		t.Errorf("systemctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// unitProps reads properties of a unit as name -> value.
func unitProps(t *testing.T, unit string, names ...string) map[string]string {
	t.Helper()
	out := systemctl(t, "show", unit, "-p", strings.Join(names, ","))
	props := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			props[k] = v
		}
	}
	return props
}

// systemdVersion is the running systemd's major version.
func systemdVersion(t *testing.T) int {
	var v int
	fmt.Sscanf(systemctl(t, "--version"), "systemd %d", &v)
	return v
}

func readTrimmed(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%v", err)
	}
	return strings.TrimSpace(string(b))
}

func (e *systemdEnv) runPod(t *testing.T, cfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	cfg.LogDirectory = t.TempDir()
	id, err := e.rt.RunPodSandbox(context.Background(), cfg, "")
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, e.journal())
	}
	return id
}

func (e *systemdEnv) containerPid(t *testing.T, id string) int {
	t.Helper()
	st, err := e.rt.ContainerStatus(context.Background(), id, true)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container %s is %v", id, st.Status.State)
	}
	return infoPid(t, st.Info["info"])
}

// TestSystemdCgroupDriver runs a pod as kubelet's systemd cgroup manager
// lays it out and checks the scopes, their limits (unit properties and
// cgroup files), stats, updates, and that berthd's service can be
// restarted, stopped and killed under running containers.
func TestSystemdCgroupDriver(t *testing.T) {
	requireSystemdNode(t)
	e := startSystemdEnv(t, "driver")
	ctx := context.Background()

	rc, err := e.rt.RuntimeConfig(ctx)
	if err != nil || rc.GetLinux().GetCgroupDriver() != runtimeapi.CgroupDriver_SYSTEMD {
		t.Errorf("RuntimeConfig: %v, %v", rc, err)
	}
	if st, err := e.rt.Status(ctx, true); err != nil || st.Info["cgroupDriver"] != "systemd" {
		t.Errorf("verbose Status: cgroupDriver %q, %v", st.GetInfo()["cgroupDriver"], err)
	}

	// The supervisor runs in a scope of its own, outside berthd's service.
	sup := e.d.SupervisorPID()
	if sup == 0 {
		t.Fatal("no supervisor")
	}
	if cg := readTrimmed(t, fmt.Sprintf("/proc/%d/cgroup", sup)); cg != "0::/system.slice/berth-supervisor.scope" {
		t.Errorf("supervisor cgroup %q", cg)
	}

	if _, err := e.d.ImageClient().PullImage(ctx, &runtimeapi.ImageSpec{Image: e.image}, nil, nil); err != nil {
		t.Fatal(err)
	}
	// kubelet makes the pod slice before RunPodSandbox and sends its
	// expanded path; systemd makes a missing one when a scope asks for it.
	podSlice := fmt.Sprintf("kubepods-burstable-podberth_%d.slice", os.Getpid())
	parent := "/kubepods.slice/kubepods-burstable.slice/" + podSlice
	podCfg := podConfig("sd", func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = parent })
	pod := e.runPod(t, podCfg)
	props := unitProps(t, "berth-"+pod+".scope", "Slice", "Delegate", "ActiveState")
	if props["Slice"] != podSlice || props["Delegate"] != "yes" || props["ActiveState"] != "active" {
		t.Errorf("sandbox scope %v", props)
	}

	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "limited"},
		Image:    &runtimeapi.ImageSpec{Image: e.image},
		Command:  []string{"sleep", "3600"},
		LogPath:  "limited.log",
		Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{
			MemoryLimitInBytes: 64 << 20, CpuQuota: 50000, CpuPeriod: 100000, CpuShares: 512,
			// What kubelet sends on every cgroup v2 node.
			Unified: map[string]string{"memory.oom.group": "1"},
		}},
	}
	id, err := e.rt.CreateContainer(ctx, pod, cfg, podCfg)
	if err != nil {
		t.Fatalf("CreateContainer: %v\n%s", err, e.journal())
	}
	if err := e.rt.StartContainer(ctx, id); err != nil {
		t.Fatalf("StartContainer: %v\n%s", err, e.journal())
	}
	scope := "berth-" + id + ".scope"
	dir := filepath.Join("/sys/fs/cgroup", strings.TrimPrefix(parent, "/"), scope)
	props = unitProps(t, scope, "Slice", "Delegate", "MemoryMax", "CPUQuotaPerSecUSec", "DefaultDependencies", "ControlGroup")
	want := map[string]string{"Slice": podSlice, "Delegate": "yes", "MemoryMax": fmt.Sprint(64 << 20), "CPUQuotaPerSecUSec": "500ms",
		"DefaultDependencies": "no", "ControlGroup": strings.TrimPrefix(dir, "/sys/fs/cgroup")}
	for k, v := range want {
		if props[k] != v {
			t.Errorf("%s: %s=%q, want %q", scope, k, props[k], v)
		}
	}
	if got := readTrimmed(t, filepath.Join(dir, "memory.max")); got != fmt.Sprint(64<<20) {
		t.Errorf("memory.max %q", got)
	}
	if got := readTrimmed(t, filepath.Join(dir, "cpu.max")); got != "50000 100000" {
		t.Errorf("cpu.max %q", got)
	}
	if got := readTrimmed(t, filepath.Join(dir, "memory.oom.group")); got != "1" {
		t.Errorf("memory.oom.group %q after create", got)
	}
	pid := e.containerPid(t, id)
	if cg := readTrimmed(t, fmt.Sprintf("/proc/%d/cgroup", pid)); cg != "0::"+strings.TrimPrefix(dir, "/sys/fs/cgroup") {
		t.Errorf("container init cgroup %q, want the scope %s", cg, dir)
	}

	// Stats come from the scope's cgroup.
	harness.WaitFor(t, "container stats", 30*time.Second, func() bool {
		s, err := e.rt.ContainerStats(ctx, id)
		return err == nil && s.GetMemory().GetWorkingSetBytes() != nil && s.GetCpu().GetUsageCoreNanoSeconds().GetValue() > 0
	})

	// An update reaches the cgroup and the unit, so that a daemon-reload,
	// which re-applies unit properties, keeps it.
	upd := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 128 << 20, CpuQuota: 50000, CpuPeriod: 100000, CpuShares: 512,
		Unified: map[string]string{"memory.oom.group": "1"}} // kubelet sends all of it again
	if err := e.rt.UpdateContainerResources(ctx, id, &runtimeapi.ContainerResources{Linux: upd}); err != nil {
		t.Fatalf("UpdateContainerResources: %v", err)
	}
	if got := readTrimmed(t, filepath.Join(dir, "memory.oom.group")); got != "1" {
		t.Errorf("memory.oom.group %q after update", got)
	}
	systemctl(t, "daemon-reload")
	if got := readTrimmed(t, filepath.Join(dir, "memory.max")); got != fmt.Sprint(128<<20) {
		t.Errorf("memory.max after update and daemon-reload %q", got)
	}
	if got := unitProps(t, scope, "MemoryMax")["MemoryMax"]; got != fmt.Sprint(128<<20) {
		t.Errorf("unit MemoryMax after update %q", got)
	}
	// systemd 253+ takes it as the scope's OOMPolicy=kill and re-applies
	// it; 252 (Debian 12) has no OOMPolicy for scopes and writes its own
	// value over it (docs/architecture.md).
	if got := readTrimmed(t, filepath.Join(dir, "memory.oom.group")); got != "1" {
		if v := systemdVersion(t); v >= 253 {
			t.Errorf("memory.oom.group %q after daemon-reload (systemd %d)", got, v)
		} else {
			t.Logf("memory.oom.group %q after daemon-reload: systemd %d keeps no OOMPolicy for scopes", got, v)
		}
	}

	// An OOM kill is found in the scope's memory.events (the supervisor
	// maps the scope path to its directory).
	hog := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "hog"},
		Image:    &runtimeapi.ImageSpec{Image: e.image},
		// dd's buffer is faulted in by the read: 64 MiB against 32.
		Command: []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=2"},
		LogPath: "hog.log",
		Linux:   &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 32 << 20}},
	}
	hogID, err := e.rt.CreateContainer(ctx, pod, hog, podCfg)
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if err := e.rt.StartContainer(ctx, hogID); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	var hogSt *runtimeapi.ContainerStatus
	harness.WaitFor(t, "the memory hog's exit", 60*time.Second, func() bool {
		r, err := e.rt.ContainerStatus(ctx, hogID, false)
		hogSt = r.GetStatus()
		return err == nil && hogSt.State == runtimeapi.ContainerState_CONTAINER_EXITED
	})
	if hogSt.Reason != "OOMKilled" || hogSt.ExitCode != 137 {
		rec, _ := os.ReadFile(filepath.Join(e.d.Dir, "run", "supervisor", "containers", hogID, "container.json"))
		t.Errorf("memory hog: exit %d reason %q; supervisor record %s", hogSt.ExitCode, hogSt.Reason, rec)
	}

	// A pod without a parent (crictl, critest) lands in berth.slice.
	loose := e.runPod(t, podConfig("sd-loose"))
	if got := unitProps(t, "berth-"+loose+".scope", "Slice")["Slice"]; got != "berth.slice" {
		t.Errorf("parentless sandbox in slice %q", got)
	}
	if _, err := os.Stat("/sys/fs/cgroup/berth.slice/berth-" + loose + ".scope"); err != nil {
		t.Error(err)
	}
	// A parent that is no slice is refused, naming the field.
	bad := podConfig("sd-bad", func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = "/kubepods/burstable/podx" })
	bad.LogDirectory = t.TempDir()
	if _, err := e.rt.RunPodSandbox(ctx, bad, ""); err == nil || !strings.Contains(err.Error(), "cgroup_parent") {
		t.Errorf("RunPodSandbox with a cgroupfs parent: %v", err)
	}

	// berthd's service restarted, stopped, killed: the container and its
	// supervisor go on.
	stillRunning := func(when string) {
		t.Helper()
		if syscall.Kill(pid, 0) != nil {
			t.Fatalf("%s: container init %d is gone", when, pid)
		}
		if got := e.d.SupervisorPID(); got != sup {
			t.Fatalf("%s: supervisor %d, want %d still", when, got, sup)
		}
	}
	systemctl(t, "restart", e.unit)
	e.ready(t)
	stillRunning("after systemctl restart")
	if got := e.containerPid(t, id); got != pid {
		t.Errorf("after restart: container pid %d, want %d", got, pid)
	}
	systemctl(t, "stop", e.unit)
	stillRunning("after systemctl stop")
	e.start(t)
	stillRunning("after systemctl start")
	// SIGKILL to every process of the service: Restart=always brings
	// berthd back.
	systemctl(t, "kill", "--signal=KILL", e.unit)
	time.Sleep(time.Second)
	e.ready(t)
	stillRunning("after the service was killed")
	if got := e.containerPid(t, id); got != pid {
		t.Errorf("after kill: container pid %d, want %d", got, pid)
	}

	// Still stoppable and removable, and its scope goes with it.
	if err := e.rt.StopContainer(ctx, id, 10); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if err := e.rt.RemoveContainer(ctx, id); err != nil {
		t.Fatalf("RemoveContainer: %v", err)
	}
	harness.WaitFor(t, "the container's scope to go", 30*time.Second, func() bool {
		_, err := os.Stat(dir)
		return os.IsNotExist(err)
	})
}

// TestSystemdSocketActivation starts berthd as the shipped socket and
// service units do, with a state dir on disk: the socket unit's
// ExecStartPre (berthd prepare-state-dir) puts the tmpfs there before the
// socket is bound inside it, so socket activation no longer costs the
// tmpfs, and berthd serves the socket systemd passed.
func TestSystemdSocketActivation(t *testing.T) {
	requireSystemdNode(t)
	d := harness.New(t, "")
	stateDir := filepath.Join(d.Dir, "run")
	os.MkdirAll(stateDir, 0o711)
	var st unix.Statfs_t
	if err := unix.Statfs(stateDir, &st); err != nil || st.Type == unix.TMPFS_MAGIC {
		// skip: platform (where the test runs)
		t.Skipf("the test's directory is on a tmpfs already (%v)", err)
	}
	base := fmt.Sprintf("berthd-test-sock-%d", os.Getpid())
	bin := harness.Binary(t)
	units := map[string][][2]string{
		"../../hack/systemd/berthd.socket": {
			{`(?m)^ExecStartPre=.*$`, fmt.Sprintf("ExecStartPre=%s prepare-state-dir --config %s", bin, d.Config)},
			{`(?m)^ListenStream=.*$`, "ListenStream=" + d.Socket},
			{`(?m)^PartOf=.*$`, "PartOf=" + base + ".service"},
			{`(?m)^WantedBy=.*$`, ""},
		},
		"../../hack/systemd/berthd.service": {
			{`(?m)^ExecStart=.*$`, fmt.Sprintf("ExecStart=%s --config %s", bin, d.Config)},
			{`(?m)^Requires=.*$`, "Requires=" + base + ".socket"},
			{`(?m)^WantedBy=.*$`, ""},
		},
	}
	for src, edits := range units {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		unit := string(b)
		for _, e := range edits {
			unit = regexp.MustCompile(e[0]).ReplaceAllString(unit, e[1])
		}
		path := filepath.Join("/run/systemd/system", base+filepath.Ext(src))
		if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(path) })
	}
	t.Cleanup(func() {
		d.RemovePods()
		exec.Command("systemctl", "stop", base+".service", base+".socket").Run()
		exec.Command("systemctl", "daemon-reload").Run()
	})
	systemctl(t, "daemon-reload")
	if out, err := exec.Command("systemctl", "start", base+".socket").CombinedOutput(); err != nil {
		t.Fatalf("start the socket: %v\n%s", err, out)
	}
	if err := unix.Statfs(stateDir, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Errorf("state dir not on a tmpfs once the socket is bound (%v)", err)
	}
	if _, err := os.Stat(d.Socket); err != nil {
		t.Fatalf("the socket is hidden: %v", err)
	}
	// The first connection starts berthd.
	d.WaitReady()
	journal, _ := exec.Command("journalctl", "--no-pager", "-u", base+".service").CombinedOutput()
	if !strings.Contains(string(journal), "socket_activated=true") {
		t.Errorf("berthd did not serve the activated socket:\n%s", journal)
	}
	if strings.Contains(string(journal), "stays on disk") {
		t.Errorf("berthd kept the state dir on disk:\n%s", journal)
	}
}

package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testsupport"
	"github.com/berth-cri/berth/test/internal/harness"
)

// cgroupV2Driver is the cgroup driver TestCgroupV2 runs berthd with:
// BERTH_TEST_CGROUP_DRIVER, cgroupfs by default. With systemd the pod with
// a cgroup parent of its own is left out (its parent would have to be a
// slice kubelet made).
func cgroupV2Driver() string {
	if d := os.Getenv("BERTH_TEST_CGROUP_DRIVER"); d != "" {
		return d
	}
	return "cgroupfs"
}

// psiEnabled is whether the kernel reports pressure: CONFIG_PSI and not
// psi=0 (the files then exist but reading them fails).
func psiEnabled() bool {
	_, err := os.ReadFile("/proc/pressure/cpu")
	return err == nil
}

// TestCgroupV2 runs what a v2 node does to containers through berthd:
// kubelet's unified map applied at create and in UpdateContainerResources,
// its hugepage limits tolerated, OOM kills reported OOMKilled (with and
// without memory.oom.group), PSI and swap in ContainerStats and
// PodSandboxStats, the pod's read from its own cgroup.
func TestCgroupV2(t *testing.T) {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		// skip: platform
		t.Skip("needs a pure cgroup v2 host")
	}
	driver := cgroupV2Driver()
	e := startPodEnv(t, "cgv2", fmt.Sprintf("cgroup_driver = %q\n", driver), "")
	ctx := context.Background()
	psi := psiEnabled()
	t.Logf("driver %s, PSI %v", driver, psi)

	// kubelet's unified map on every v2 container, and its hugepage
	// limits (one per page size, whether or not hugetlb is enabled).
	kubelet := func(limit int64, unified map[string]string) *runtimeapi.LinuxContainerResources {
		u := map[string]string{"memory.oom.group": "1", "memory.swap.max": "0"}
		for k, v := range unified {
			u[k] = v
		}
		return &runtimeapi.LinuxContainerResources{
			CpuShares: 2, MemoryLimitInBytes: limit, OomScoreAdj: 1000, Unified: u,
			HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB"}, {PageSize: "1GB"}},
		}
	}
	exitStatus := func(t *testing.T, id string) *runtimeapi.ContainerStatus {
		t.Helper()
		var cs *runtimeapi.ContainerStatus
		harness.WaitFor(t, "container exit", 30*time.Second, func() bool {
			resp, err := e.rt.ContainerStatus(ctx, id, false)
			if err != nil {
				return false
			}
			cs = resp.Status
			return cs.State == runtimeapi.ContainerState_CONTAINER_EXITED
		})
		return cs
	}
	// cgroupFile reads a file of the container's own cgroup from inside it
	// (its cgroup namespace makes it /sys/fs/cgroup, on either driver).
	cgroupFile := func(t *testing.T, id, name string) string {
		t.Helper()
		out, stderr, err := e.rt.ExecSync(ctx, id, []string{"cat", "/sys/fs/cgroup/" + name}, 0)
		if err != nil {
			t.Fatalf("cat %s: %v %s", name, err, stderr)
		}
		return strings.TrimSpace(string(out))
	}

	t.Run("OOMKilled", func(t *testing.T) {
		for _, tc := range []struct {
			name, script string
			group        string
		}{
			// memory.oom.group=1, as kubelet sets it: the whole cgroup dies.
			{"group", `x=a; while :; do x=$x$x; done`, "1"},
			// Without it only the largest process (the shell, the init) is
			// killed; the sleep would live on but for the pid namespace.
			{"alone", `sleep 1000 & x=a; while :; do x=$x$x; done`, "0"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cfg := e.containerConfig("oom-"+tc.name, "sh", "-c", tc.script)
				cfg.Linux.Resources = kubelet(32<<20, map[string]string{"memory.oom.group": tc.group})
				id := e.run(t, cfg)
				cs := exitStatus(t, id)
				if cs.Reason != "OOMKilled" || cs.ExitCode != 137 {
					t.Errorf("exit %d reason %q, want 137 OOMKilled\n%s", cs.ExitCode, cs.Reason, e.d.Logs)
				}
			})
		}
	})

	// One long-lived container for the file, update and stats checks. Its
	// 8 MiB are in the pod's /dev/shm (tmpfs pages are charged to the
	// writer and are no inactive file pages): a shell variable would not
	// do, busybox's sh gives its memory back.
	cfg := e.containerConfig("unified", "sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=8 2>/dev/null; sleep 100000")
	cfg.Linux.Resources = kubelet(64<<20, map[string]string{"memory.high": "50331648"})
	id := e.run(t, cfg)

	t.Run("unified at create", func(t *testing.T) {
		for file, want := range map[string]string{"memory.high": "50331648", "memory.oom.group": "1", "memory.swap.max": "0", "memory.max": "67108864"} {
			if got := cgroupFile(t, id, file); got != want {
				t.Errorf("%s = %q, want %q", file, got, want)
			}
		}
	})

	t.Run("unified in UpdateContainerResources", func(t *testing.T) {
		if err := e.rt.UpdateContainerResources(ctx, id, &runtimeapi.ContainerResources{
			Linux: kubelet(64<<20, map[string]string{"memory.high": "41943040"}),
		}); err != nil {
			t.Fatalf("update: %v\n%s", err, e.d.Logs)
		}
		if got := cgroupFile(t, id, "memory.high"); got != "41943040" {
			t.Errorf("memory.high after update = %q, want 41943040", got)
		}
		// A key no controller of this host offers is refused, with the
		// reason, and nothing changes.
		err := e.rt.UpdateContainerResources(ctx, id, &runtimeapi.ContainerResources{
			Linux: kubelet(64<<20, map[string]string{"nosuch.max": "1"}),
		})
		if s := status.Convert(err); s.Code() != codes.InvalidArgument || !strings.Contains(s.Message(), "nosuch") {
			t.Errorf("update with an unknown controller: %v, want InvalidArgument naming it", err)
		}
		if got := cgroupFile(t, id, "memory.high"); got != "41943040" {
			t.Errorf("memory.high after a refused update = %q", got)
		}
	})

	t.Run("unknown controller at create", func(t *testing.T) {
		bad := e.containerConfig("bad", "true")
		bad.Linux.Resources = kubelet(0, map[string]string{"nosuch.max": "1"})
		if s := e.createErr(t, bad); s.Code() != codes.InvalidArgument || !strings.Contains(s.Message(), "nosuch") {
			t.Errorf("create: %v, want InvalidArgument naming the key", s.Err())
		}
	})

	t.Run("ContainerStats", func(t *testing.T) {
		swapFile := cgroupFile(t, id, "memory.swap.current")
		var (
			cs      *runtimeapi.ContainerStats
			lastErr error
		)
		// Not harness.WaitFor: its wait is stretched 20x in the VM, and a
		// miss should show what was read.
		if !testsupport.Poll(2*time.Minute, time.Second, func() bool {
			cs, lastErr = e.rt.ContainerStats(ctx, id)
			return lastErr == nil && cs.GetMemory().GetWorkingSetBytes().GetValue() > 4000000
		}) {
			t.Fatalf("no memory in the stats: %v, %v; memory.current %s, memory.stat %.300s\n%s", lastErr, cs,
				cgroupFile(t, id, "memory.current"), cgroupFile(t, id, "memory.stat"), e.d.Logs)
		}
		if sw := cs.GetSwap(); sw.GetTimestamp() <= 0 || sw.GetSwapUsageBytes() == nil {
			t.Errorf("swap %v (memory.swap.current %s)", sw, swapFile)
		}
		checkPSI(t, "container", psi, cs.GetCpu().GetPsi(), cs.GetMemory().GetPsi(), cs.GetIo())
	})

	t.Run("PodSandboxStats from the pod cgroup", func(t *testing.T) {
		if driver != "cgroupfs" {
			// skip: not applicable to this driver
			t.Skipf("a pod cgroup of the %s driver is a slice kubelet makes", driver)
		}
		parent := fmt.Sprintf("/berthit-cgv2-%d", os.Getpid())
		// Last cleanup: the pod cgroup kubelet would have made and removed.
		t.Cleanup(func() {
			if err := os.Remove(filepath.Join("/sys/fs/cgroup", parent)); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("remove pod cgroup: %v", err)
			}
		})
		podCfg := podConfig("cgv2-parent", func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = parent })
		podCfg.LogDirectory = t.TempDir()
		pod, err := e.rt.RunPodSandbox(ctx, podCfg, "")
		if err != nil {
			t.Fatalf("%v\n%s", err, e.d.Logs)
		}
		t.Cleanup(func() {
			e.rt.StopPodSandbox(context.Background(), pod)
			e.rt.RemovePodSandbox(context.Background(), pod)
		})
		c := e.containerConfig("in-pod", "sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=8 2>/dev/null; sleep 100000")
		cid, err := e.rt.CreateContainer(ctx, pod, c, podCfg)
		if err != nil {
			t.Fatalf("create: %v\n%s", err, e.d.Logs)
		}
		if err := e.rt.StartContainer(ctx, cid); err != nil {
			t.Fatalf("start: %v\n%s", err, e.d.Logs)
		}
		var ps *runtimeapi.PodSandboxStats
		// The container's 8 MiB of shm are charged in the pod cgroup too.
		harness.WaitFor(t, "the pod's memory in its stats", 30*time.Second, func() bool {
			resp, err := e.rt.PodSandboxStats(ctx, pod)
			if err != nil {
				return false
			}
			ps = resp
			return ps.GetLinux().GetMemory().GetUsageBytes().GetValue() >= 8<<20
		})
		l := ps.GetLinux()
		// PSI is only read from a pod cgroup: a pod summed from its
		// containers has none.
		checkPSI(t, "pod", psi, l.GetCpu().GetPsi(), l.GetMemory().GetPsi(), l.GetIo())
		if len(l.GetContainers()) != 1 {
			t.Errorf("pod containers %v", l.GetContainers())
		}
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", parent, "cpu.pressure")); psi && err != nil {
			t.Errorf("pod cgroup: %v", err)
		}
	})
}

// checkPSI wants cpu, memory and io pressure, some and full, when the
// kernel has PSI, and none at all when it has not.
func checkPSI(t *testing.T, who string, enabled bool, cpu, mem *runtimeapi.PsiStats, io *runtimeapi.IoUsage) {
	t.Helper()
	if !enabled {
		if cpu != nil || mem != nil || io.GetPsi() != nil {
			t.Errorf("%s: PSI reported on a kernel without it: %v %v %v", who, cpu, mem, io)
		}
		return
	}
	for name, p := range map[string]*runtimeapi.PsiStats{"cpu": cpu, "memory": mem, "io": io.GetPsi()} {
		// cpu "full" exists since 5.13 (the guest runs 6.1).
		if p.GetSome() == nil || p.GetFull() == nil {
			t.Errorf("%s %s PSI = %v", who, name, p)
		}
	}
	// Totals are nanoseconds: a container that ran has waited some.
	if cpu.GetSome().GetTotal() == 0 && mem.GetSome().GetTotal() == 0 && io.GetPsi().GetSome().GetTotal() == 0 {
		t.Logf("%s: all PSI totals 0", who)
	}
}

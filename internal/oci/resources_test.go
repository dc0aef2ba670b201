package oci

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestLinuxResources(t *testing.T) {
	v1 := fakeHost()
	v2 := fakeHost()
	v2.CgroupV2 = true
	v2.Controllers = []string{"cpuset", "cpu", "io", "memory", "pids"} // no hugetlb
	v2Hugetlb := v2
	v2Hugetlb.Controllers = append(v2.Controllers, "hugetlb")
	v2Hugetlb.Hugetlb = true
	v2NoSwap := v2
	v2NoSwap.SwapAccounting = false
	noSwap := fakeHost()
	noSwap.SwapAccounting = false
	hugetlb := fakeHost()
	hugetlb.Hugetlb = true
	// What kubelet sends on every container of a v2 node.
	kubeletUnified := map[string]string{"memory.high": "107374182", "memory.swap.max": "0", "memory.oom.group": "1"}
	hp := []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}, {PageSize: "1GB", Limit: 0}}
	tests := []struct {
		name  string
		host  Host
		r     *runtimeapi.LinuxContainerResources
		check func(*testing.T, *specs.LinuxResources)
		err   error
	}{
		{"nil", v1, nil, func(t *testing.T, r *specs.LinuxResources) {
			if r.CPU != nil || r.Memory != nil {
				t.Errorf("%+v", r)
			}
		}, nil},
		{"kubelet burstable on v1", v1, &runtimeapi.LinuxContainerResources{
			CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 1 << 28, MemorySwapLimitInBytes: 1 << 28,
			CpusetCpus: "0-1", CpusetMems: "0", HugepageLimits: hp,
		}, func(t *testing.T, r *specs.LinuxResources) {
			c, m := r.CPU, r.Memory
			if *c.Shares != 512 || *c.Quota != 50000 || *c.Period != 100000 || c.Cpus != "0-1" || c.Mems != "0" {
				t.Errorf("cpu %+v", c)
			}
			if *m.Limit != 1<<28 || m.Swap == nil || *m.Swap != 1<<28 {
				t.Errorf("memory %+v", m)
			}
			if len(r.HugepageLimits) != 0 {
				t.Errorf("hugepage limits applied without a hugetlb controller: %+v", r.HugepageLimits)
			}
		}, nil},
		{"unlimited quota", v1, &runtimeapi.LinuxContainerResources{CpuQuota: -1}, func(t *testing.T, r *specs.LinuxResources) {
			if *r.CPU.Quota != -1 {
				t.Errorf("quota %d", *r.CPU.Quota)
			}
		}, nil},
		{"swap without accounting skipped", noSwap, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 100, MemorySwapLimitInBytes: 100},
			func(t *testing.T, r *specs.LinuxResources) {
				if r.Memory.Swap != nil {
					t.Error("swap applied")
				}
			}, nil},
		{"hugepages with hugetlb", hugetlb, &runtimeapi.LinuxContainerResources{HugepageLimits: hp}, func(t *testing.T, r *specs.LinuxResources) {
			if len(r.HugepageLimits) != 2 || r.HugepageLimits[0].Pagesize != "2MB" {
				t.Errorf("%+v", r.HugepageLimits)
			}
		}, nil},
		{"unified on v2", v2, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "100"}}, func(t *testing.T, r *specs.LinuxResources) {
			if r.Unified["memory.high"] != "100" {
				t.Errorf("%+v", r.Unified)
			}
		}, nil},
		{"kubelet's unified map on v2", v2, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 27, Unified: kubeletUnified, HugepageLimits: hp},
			func(t *testing.T, r *specs.LinuxResources) {
				if len(r.Unified) != 3 || r.Unified["memory.oom.group"] != "1" || r.Unified["memory.swap.max"] != "0" || r.Unified["memory.high"] != "107374182" {
					t.Errorf("unified %+v", r.Unified)
				}
				if len(r.HugepageLimits) != 0 {
					t.Errorf("hugepage limits applied without a hugetlb controller on v2: %+v", r.HugepageLimits)
				}
			}, nil},
		{"hugepages on v2 with hugetlb", v2Hugetlb, &runtimeapi.LinuxContainerResources{HugepageLimits: hp}, func(t *testing.T, r *specs.LinuxResources) {
			if len(r.HugepageLimits) != 2 {
				t.Errorf("%+v", r.HugepageLimits)
			}
		}, nil},
		{"unified key of an absent controller", v2, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"hugetlb.2MB.max": "0"}}, nil, errdefs.ErrInvalidArgument},
		{"unified key of a present hugetlb", v2Hugetlb, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"hugetlb.2MB.max": "0"}}, nil, nil},
		{"unified swap without accounting", v2NoSwap, &runtimeapi.LinuxContainerResources{Unified: kubeletUnified}, nil, errdefs.ErrInvalidArgument},
		{"unified cgroup limit", v2, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"cgroup.max.descendants": "10"}}, nil, nil},
		{"unified cgroup.procs refused", v2, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"cgroup.procs": "1"}}, nil, errdefs.ErrInvalidArgument},
		{"unified cgroup.kill refused", v2, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"cgroup.kill": "1"}}, nil, errdefs.ErrInvalidArgument},
		{"unified key without a dot", v2, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory": "1"}}, nil, errdefs.ErrInvalidArgument},
		{"unified key without a parameter", v2, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.": "1"}}, nil, errdefs.ErrInvalidArgument},
		{"unified NUL in value", v2, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "1\x00"}}, nil, errdefs.ErrInvalidArgument},
		{"unified on v1 refused", v1, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "100"}}, nil, errdefs.ErrInvalidArgument},
		{"unified path key refused", v2, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"../x": "1"}}, nil, errdefs.ErrInvalidArgument},
		{"negative shares", v1, &runtimeapi.LinuxContainerResources{CpuShares: -2}, nil, errdefs.ErrInvalidArgument},
		{"quota below -1", v1, &runtimeapi.LinuxContainerResources{CpuQuota: -2}, nil, errdefs.ErrInvalidArgument},
		{"negative period", v1, &runtimeapi.LinuxContainerResources{CpuPeriod: -1}, nil, errdefs.ErrInvalidArgument},
		{"negative memory", v1, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -1}, nil, errdefs.ErrInvalidArgument},
		{"bad cpuset", v1, &runtimeapi.LinuxContainerResources{CpusetCpus: "0-"}, nil, errdefs.ErrInvalidArgument},
		{"bad page size", v1, &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2M"}}}, nil, errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := linuxResources(tt.host, tt.r)
			checkErr(t, err, tt.err, "resources")
			if err == nil && tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

func TestOOMScoreAdj(t *testing.T) {
	h := fakeHost()
	h.OOMScoreAdj = -500
	tests := []struct {
		in   int64
		want int
		err  error
	}{
		{0, 0, nil}, {1000, 1000, nil}, {-998, -500, nil}, {-500, -500, nil}, {-1001, 0, errdefs.ErrInvalidArgument}, {1001, 0, errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		got, err := oomScoreAdj(h, tt.in)
		checkErr(t, err, tt.err, "oom_score_adj")
		if got != tt.want {
			t.Errorf("oomScoreAdj(%d) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestContainerCgroupAndOOM(t *testing.T) {
	in := testInput(t)
	in.Host.OOMScoreAdj = -10
	in.Config.Linux = &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{OomScoreAdj: -997}}
	res, err := ContainerSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Spec.Linux.CgroupsPath != "/kubepods/besteffort/poduid-1/c1" || *res.Spec.Process.OOMScoreAdj != -10 {
		t.Fatalf("cgroups path %q oom %d", res.Spec.Linux.CgroupsPath, *res.Spec.Process.OOMScoreAdj)
	}
	in.SandboxConfig.Linux.CgroupParent = ""
	if res, err = ContainerSpec(in); err != nil || res.Spec.Linux.CgroupsPath != "/berth/c1" {
		t.Fatalf("default parent: %v %v", res, err)
	}
}

func TestCheckSysctls(t *testing.T) {
	tests := []struct {
		name             string
		sysctls          map[string]string
		hostNet, hostIPC bool
		err              error
	}{
		{"namespaced ones", map[string]string{"kernel.shmmax": "1", "kernel.msgmax": "1", "kernel.sem": "1 2 3 4", "fs.mqueue.msg_max": "10", "net.ipv4.ip_forward": "1"}, false, false, nil},
		{"slash form", map[string]string{"net/ipv4/conf/eth0.100/rp_filter": "1"}, false, false, nil},
		{"net with host network", map[string]string{"net.core.somaxconn": "1024"}, true, false, errdefs.ErrInvalidArgument},
		{"ipc with host ipc", map[string]string{"kernel.shmmax": "1"}, false, true, errdefs.ErrInvalidArgument},
		{"ipc with host network is fine", map[string]string{"kernel.shmmax": "1"}, true, false, nil},
		{"not namespaced", map[string]string{"vm.swappiness": "1"}, false, false, errdefs.ErrInvalidArgument},
		{"kernel.hostname", map[string]string{"kernel.hostname": "x"}, false, false, errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, checkSysctls(tt.sysctls, tt.hostNet, tt.hostIPC), tt.err, "sysctl")
		})
	}
}

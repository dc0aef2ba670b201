package nri

import (
	"errors"
	"reflect"
	"testing"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func baseSpec() *specs.Spec {
	return &specs.Spec{
		Process: &specs.Process{Args: []string{"sleep", "1"}, Env: []string{"PATH=/bin", "KEEP=1", "DROP=1"}},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/data", Type: "bind", Source: "/old"},
		},
		Annotations: map[string]string{"gone": "x"},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace, Path: "/a"}},
			Devices:    []specs.LinuxDevice{{Path: "/dev/old", Type: "c", Major: 1, Minor: 1}},
		},
	}
}

// TestAdjust applies plugin adjustments through NRI's adjustment code to
// berth's spec editor: what a plugin asks is what the written spec says.
func TestAdjust(t *testing.T) {
	n := &NRI{log: logrus.New()}
	tests := []struct {
		name   string
		adjust func(a *api.ContainerAdjustment)
		check  func(t *testing.T, s *specs.Spec)
	}{
		{"env added, replaced and removed", func(a *api.ContainerAdjustment) {
			a.AddEnv("NEW", "yes")
			a.AddEnv("KEEP", "2")
			a.RemoveEnv("DROP")
		}, func(t *testing.T, s *specs.Spec) {
			if want := []string{"PATH=/bin", "KEEP=2", "NEW=yes"}; !reflect.DeepEqual(s.Process.Env, want) {
				t.Errorf("env %v, want %v", s.Process.Env, want)
			}
		}},
		{"mounts replaced, added and removed, sorted", func(a *api.ContainerAdjustment) {
			a.AddMount(&api.Mount{Destination: "/data", Type: "bind", Source: "/new", Options: []string{"rbind", "rprivate"}})
			a.AddMount(&api.Mount{Destination: "/extra", Type: "tmpfs", Source: "tmpfs"})
			a.RemoveMount("/proc")
		}, func(t *testing.T, s *specs.Spec) {
			var dests []string
			for _, m := range s.Mounts {
				dests = append(dests, m.Destination+"<"+m.Source)
			}
			if want := []string{"/data</new", "/extra<tmpfs"}; !reflect.DeepEqual(dests, want) {
				t.Errorf("mounts %v, want %v", dests, want)
			}
		}},
		{"annotations, args, hooks, rlimits, sysctl", func(a *api.ContainerAdjustment) {
			a.AddAnnotation("nri", "on")
			a.RemoveAnnotation("gone")
			a.SetArgs([]string{"true"})
			a.AddHooks(&api.Hooks{Poststart: []*api.Hook{{Path: "/bin/hook"}}})
			a.AddRlimit("RLIMIT_NOFILE", 10, 5)
			a.Linux = &api.LinuxContainerAdjustment{Sysctl: map[string]string{"net.core.somaxconn": "512"}}
		}, func(t *testing.T, s *specs.Spec) {
			if !reflect.DeepEqual(s.Annotations, map[string]string{"nri": "on"}) || !reflect.DeepEqual(s.Process.Args, []string{"true"}) {
				t.Errorf("annotations %v, args %v", s.Annotations, s.Process.Args)
			}
			if s.Hooks == nil || len(s.Hooks.Poststart) != 1 || s.Hooks.Poststart[0].Path != "/bin/hook" {
				t.Errorf("hooks %+v", s.Hooks)
			}
			if len(s.Process.Rlimits) != 1 || s.Process.Rlimits[0].Hard != 10 || s.Linux.Sysctl["net.core.somaxconn"] != "512" {
				t.Errorf("rlimits %v, sysctl %v", s.Process.Rlimits, s.Linux.Sysctl)
			}
		}},
		{"devices, namespaces, resources, cgroups path, oom score", func(a *api.ContainerAdjustment) {
			a.AddDevice(&api.LinuxDevice{Path: "/dev/new", Type: "c", Major: 10, Minor: 200})
			a.RemoveDevice("/dev/old")
			a.AddOrReplaceNamespace(&api.LinuxNamespace{Type: "network", Path: "/b"})
			a.SetLinuxMemoryLimit(1 << 30)
			a.SetLinuxCPUShares(256)
			a.SetLinuxCPUSetCPUs("0")
			a.Linux.CgroupsPath = "/nri/ctr"
			a.Linux.OomScoreAdj = api.Int(-500)
		}, func(t *testing.T, s *specs.Spec) {
			if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/new" {
				t.Errorf("devices %v", s.Linux.Devices)
			}
			if d := s.Linux.Resources.Devices; len(d) != 1 || !d[0].Allow || *d[0].Major != 10 {
				t.Errorf("device cgroup rules %v", d)
			}
			if s.Linux.Namespaces[1].Path != "/b" || len(s.Linux.Namespaces) != 2 {
				t.Errorf("namespaces %v", s.Linux.Namespaces)
			}
			r := s.Linux.Resources
			if *r.Memory.Limit != 1<<30 || *r.CPU.Shares != 256 || r.CPU.Cpus != "0" {
				t.Errorf("resources %+v %+v", r.Memory, r.CPU)
			}
			if s.Linux.CgroupsPath != "/nri/ctr" || *s.Process.OOMScoreAdj != -500 {
				t.Errorf("cgroups path %q, oom %v", s.Linux.CgroupsPath, *s.Process.OOMScoreAdj)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &api.ContainerAdjustment{}
			tt.adjust(a)
			s := baseSpec()
			if err := n.adjust(s, a); err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
		})
	}
}

func TestAdjustCDIDevices(t *testing.T) {
	a := &api.ContainerAdjustment{}
	a.AddCDIDevice(&api.CDIDevice{Name: "vendor.com/gpu=0"})
	if err := (&NRI{}).adjust(baseSpec(), a); err == nil {
		t.Error("CDI devices applied with no injector")
	}
	var got []string
	n := &NRI{cdi: func(_ *specs.Spec, d []string) error { got = d; return nil }}
	if err := n.adjust(baseSpec(), a); err != nil || !reflect.DeepEqual(got, []string{"vendor.com/gpu=0"}) {
		t.Errorf("injected %v, err %v", got, err)
	}
	boom := errors.New("unknown device")
	n.cdi = func(*specs.Spec, []string) error { return boom }
	if err := n.adjust(baseSpec(), a); !errors.Is(err, boom) {
		t.Errorf("injector error lost: %v", err)
	}
}

func TestAdjustRefusesUnknownNamespace(t *testing.T) {
	a := &api.ContainerAdjustment{}
	a.AddOrReplaceNamespace(&api.LinuxNamespace{Type: "bogus"})
	if err := (&NRI{}).adjust(baseSpec(), a); err == nil {
		t.Error("unknown namespace type accepted")
	}
}

func TestResources(t *testing.T) {
	cur := &runtimeapi.LinuxContainerResources{
		CpuShares: 1024, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 1 << 20, CpusetCpus: "0-3",
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 4}},
		Unified:        map[string]string{"memory.high": "1"},
	}
	// CRI -> NRI -> merged over nothing gives the same resources back.
	if got := mergeResources(nil, fromCRIResources(cur)); !proto.Equal(got, cur) {
		t.Errorf("round trip: %v, want %v", got, cur)
	}
	if fromCRIResources(nil) != nil {
		t.Error("nil resources converted to something")
	}
	// Zero CRI fields stay unset.
	if r := fromCRIResources(&runtimeapi.LinuxContainerResources{}); r.GetCpu().GetShares() != nil || r.GetMemory().GetLimit() != nil {
		t.Errorf("zero fields set: %v", r)
	}

	tests := []struct {
		name   string
		update *api.LinuxResources
		want   func(r *runtimeapi.LinuxContainerResources)
	}{
		{"nothing", nil, func(*runtimeapi.LinuxContainerResources) {}},
		{"cpu", &api.LinuxResources{Cpu: &api.LinuxCPU{Shares: api.UInt64(uint64(2)), Cpus: "1"}}, func(r *runtimeapi.LinuxContainerResources) {
			r.CpuShares, r.CpusetCpus = 2, "1"
		}},
		{"memory", &api.LinuxResources{Memory: &api.LinuxMemory{Limit: api.Int64(int64(5)), Swap: api.Int64(int64(6))}}, func(r *runtimeapi.LinuxContainerResources) {
			r.MemoryLimitInBytes, r.MemorySwapLimitInBytes = 5, 6
		}},
		{"hugepages replaced and added, unified merged", &api.LinuxResources{
			HugepageLimits: []*api.HugepageLimit{{PageSize: "2MB", Limit: 8}, {PageSize: "1GB", Limit: 1}},
			Unified:        map[string]string{"memory.max": "9"},
		}, func(r *runtimeapi.LinuxContainerResources) {
			r.HugepageLimits = []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 8}, {PageSize: "1GB", Limit: 1}}
			r.Unified = map[string]string{"memory.high": "1", "memory.max": "9"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := proto.Clone(cur).(*runtimeapi.LinuxContainerResources)
			want := proto.Clone(cur).(*runtimeapi.LinuxContainerResources)
			tt.want(want)
			if got := mergeResources(cur, tt.update); !proto.Equal(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
			if !proto.Equal(cur, before) {
				t.Error("merge changed its input")
			}
		})
	}
}

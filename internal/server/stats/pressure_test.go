package stats

import (
	"context"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/stats"
)

// psiOf is a pressure reading whose totals start at base nanoseconds.
func psiOf(base uint64) *stats.Pressure {
	p := func(some, full uint64) *stats.PSI {
		return &stats.PSI{Some: &stats.PSIData{Total: some, Avg10: 1.5}, Full: &stats.PSIData{Total: full}}
	}
	return &stats.Pressure{CPU: p(base+1, base+2), Memory: p(base+3, base+4), IO: p(base+5, base+6)}
}

// TestStatsPSI: PSI goes to cpu, memory and io of ContainerStats, and of
// PodSandboxStats read from the pod cgroup (not summed from containers);
// without PSI (v1, psi=0) the fields are absent, not zero.
func TestStatsPSI(t *testing.T) {
	for _, tc := range []struct {
		name           string
		container, pod *stats.Pressure
	}{
		{"v2 with PSI", psiOf(1000), psiOf(5000)},
		{"no PSI", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := running("c1", "p1")
			sb := SandboxInfo{ID: "p1", CgroupParent: "/kubepods/podp1", Containers: []ContainerInfo{c}}
			cr := reading(1e9, stats.Memory{Usage: 10}, 1)
			cr.PSI = tc.container
			cr.Swap = &stats.Swap{Usage: 4096, Limit: 1 << 20}
			pr := reading(2e9, stats.Memory{Usage: 20}, 2)
			pr.PSI = tc.pod
			svc := newTestService(&fakeSource{containers: sb.Containers, sandboxes: []SandboxInfo{sb}},
				&fakeCgroups{byPath: map[string]stats.Cgroup{c.CgroupPath: cr, sb.CgroupParent: pr}}, nil)
			ctx := context.Background()

			cresp, err := svc.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: "c1"})
			if err != nil {
				t.Fatal(err)
			}
			cs := cresp.GetStats()
			checkContainer(t, cs)
			if sw := cs.GetSwap(); sw.GetSwapUsageBytes().GetValue() != 4096 || sw.GetSwapAvailableBytes().GetValue() != 1<<20-4096 {
				t.Errorf("swap %v", sw)
			}
			presp, err := svc.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: "p1"})
			if err != nil {
				t.Fatal(err)
			}
			pl := presp.GetStats().GetLinux()

			for _, got := range []struct {
				who      string
				cpu, mem *runtimeapi.PsiStats
				io       *runtimeapi.IoUsage
				base     uint64
				want     bool
			}{
				{"container", cs.GetCpu().GetPsi(), cs.GetMemory().GetPsi(), cs.GetIo(), 1000, tc.container != nil},
				{"pod", pl.GetCpu().GetPsi(), pl.GetMemory().GetPsi(), pl.GetIo(), 5000, tc.pod != nil},
			} {
				if !got.want {
					if got.cpu != nil || got.mem != nil || got.io != nil {
						t.Errorf("%s: PSI reported without PSI: %v %v %v", got.who, got.cpu, got.mem, got.io)
					}
					continue
				}
				if got.cpu.GetSome().GetTotal() != got.base+1 || got.cpu.GetFull().GetTotal() != got.base+2 || got.cpu.GetSome().GetAvg10() != 1.5 {
					t.Errorf("%s cpu psi %v", got.who, got.cpu)
				}
				if got.mem.GetSome().GetTotal() != got.base+3 || got.mem.GetFull().GetTotal() != got.base+4 {
					t.Errorf("%s memory psi %v", got.who, got.mem)
				}
				if got.io.GetTimestamp() <= 0 || got.io.GetPsi().GetSome().GetTotal() != got.base+5 || got.io.GetPsi().GetFull().GetTotal() != got.base+6 {
					t.Errorf("%s io %v", got.who, got.io)
				}
			}
		})
	}
}

// TestMetricsIOAndOOM: v2's io.stat and memory.events reach the blkio, fs
// and oom families, labelled with the device's name.
func TestMetricsIOAndOOM(t *testing.T) {
	svc, _ := metricsFixture(nil)
	svc.deviceName = func(major, minor uint64) string {
		if major == 8 && minor == 0 {
			return "/dev/sda"
		}
		return "253:1"
	}
	cg := svc.cgroups.(*fakeCgroups)
	r := cg.byPath["/berth/c1"]
	r.IO = []stats.IODevice{
		{Major: 8, Minor: 0, ReadBytes: 4096, WriteBytes: 8192, ReadOps: 1, WriteOps: 2},
		{Major: 253, Minor: 1, WriteBytes: 512, WriteOps: 1},
	}
	r.MemoryEvents = &stats.MemoryEvents{OOM: 2, OOMKill: 2, OOMGroupKill: 1}
	cg.byPath["/berth/c1"] = r

	resp, err := svc.ListPodSandboxMetrics(context.Background(), &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pm := resp.GetPodMetrics()[0]
	// The pod cgroup read no IO and no events.
	for _, m := range pm.GetMetrics() {
		if m.GetName() == "container_oom_events_total" && m.GetValue().GetValue() != 0 {
			t.Errorf("pod oom events %v", m)
		}
	}
	got := map[string]uint64{}
	for _, m := range pm.GetContainerMetrics()[0].GetMetrics() {
		v := m.GetLabelValues()
		got[m.GetName()+" "+joinComma(v[len(baseLabels):])] = m.GetValue().GetValue()
	}
	for key, want := range map[string]uint64{
		"container_oom_events_total ":                           2,
		"container_fs_reads_total /dev/sda":                     1,
		"container_fs_reads_bytes_total /dev/sda":               4096,
		"container_fs_writes_total /dev/sda":                    2,
		"container_fs_writes_bytes_total /dev/sda":              8192,
		"container_fs_writes_bytes_total 253:1":                 512,
		"container_blkio_device_usage_total /dev/sda,8,0,Read":  4096,
		"container_blkio_device_usage_total /dev/sda,8,0,Write": 8192,
		"container_blkio_device_usage_total 253:1,253,1,Write":  512,
		"container_fs_usage_bytes " + mountpoint:                4096,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %d (reported %v), want %d", key, v, ok, want)
		}
	}
}

func joinComma(v []string) string { return strings.Join(v, ",") }

package stats

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/snapshot"
	"github.com/berth-cri/berth/internal/stats"
)

// fakeSource serves fixed containers and sandboxes; filters match by id,
// pod id and labels, as the real services do.
type fakeSource struct {
	containers []ContainerInfo
	sandboxes  []SandboxInfo
}

func labelsMatch(sel, l map[string]string) bool {
	for k, v := range sel {
		if l[k] != v {
			return false
		}
	}
	return true
}

func (f *fakeSource) Containers(fl *runtimeapi.ContainerStatsFilter) []ContainerInfo {
	var out []ContainerInfo
	for _, c := range f.containers {
		if (fl.GetId() == "" || c.ID == fl.GetId()) && (fl.GetPodSandboxId() == "" || c.SandboxID == fl.GetPodSandboxId()) && labelsMatch(fl.GetLabelSelector(), c.Labels) {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeSource) Container(id string) (ContainerInfo, error) {
	for _, c := range f.containers {
		if c.ID == id {
			return c, nil
		}
	}
	return ContainerInfo{}, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
}

func (f *fakeSource) Sandboxes(fl *runtimeapi.PodSandboxStatsFilter) []SandboxInfo {
	var out []SandboxInfo
	for _, s := range f.sandboxes {
		if (fl.GetId() == "" || s.ID == fl.GetId()) && labelsMatch(fl.GetLabelSelector(), s.Labels) {
			out = append(out, s)
		}
	}
	return out
}

func (f *fakeSource) Sandbox(id string) (SandboxInfo, error) {
	for _, s := range f.sandboxes {
		if s.ID == id {
			return s, nil
		}
	}
	return SandboxInfo{}, fmt.Errorf("sandbox %s: %w", id, errdefs.ErrNotFound)
}

// fakeCgroups returns a fixed reading per path; each read advances the
// clock one second and the CPU counter by half a core-second.
type fakeCgroups struct {
	mu     sync.Mutex
	byPath map[string]stats.Cgroup
	errs   map[string]error
	reads  int
}

func (f *fakeCgroups) Read(p string) (stats.Cgroup, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, ok := f.errs[p]; ok {
		return stats.Cgroup{}, err
	}
	c, ok := f.byPath[p]
	if !ok {
		return stats.Cgroup{}, fmt.Errorf("cgroup %s: %w", p, errdefs.ErrNotFound)
	}
	f.reads++
	c.Time = c.Time.Add(time.Second)
	c.CPUUsageNanos += 5e8
	f.byPath[p] = c
	return c, nil
}

const mountpoint = "/var/lib/berth/snapshots"

func newTestService(src *fakeSource, cg *fakeCgroups, nets map[string]*stats.Network) *Service {
	return New(Deps{
		Source:  src,
		Cgroups: cg,
		LayerUsage: func(key string) (snapshot.Usage, error) {
			if key == "gone" {
				return snapshot.Usage{}, fmt.Errorf("rootfs %s: %w", key, errdefs.ErrNotFound)
			}
			return snapshot.Usage{Bytes: 4096, Inodes: 3}, nil
		},
		LayerMountpoint: mountpoint,
		Network: func(ns string) (*stats.Network, error) {
			if n, ok := nets[ns]; ok {
				return n, nil
			}
			return nil, fmt.Errorf("netns %s: %w", ns, errdefs.ErrNotFound)
		},
	})
}

func reading(cpu uint64, mem stats.Memory, pids uint64) stats.Cgroup {
	return stats.Cgroup{Time: time.Unix(100, 0), CPUUsageNanos: cpu, Memory: &mem, Pids: &pids, Swap: &stats.Swap{Usage: 7}}
}

func running(id, pod string) ContainerInfo {
	return ContainerInfo{
		ID: id, SandboxID: pod, Running: true, CgroupPath: "/berth/" + id, RootfsKey: id,
		Metadata: &runtimeapi.ContainerMetadata{Name: id}, Labels: map[string]string{"app": pod},
		Annotations: map[string]string{"a": "b"},
	}
}

// checkTimestamps fails if any usage block of cs lacks a timestamp or the
// values kubelet dereferences.
func checkContainer(t *testing.T, cs *runtimeapi.ContainerStats) {
	t.Helper()
	if cs.GetAttributes().GetId() == "" {
		t.Fatalf("no attributes: %v", cs)
	}
	if cs.Cpu.GetTimestamp() <= 0 || cs.Cpu.UsageCoreNanoSeconds == nil || cs.Cpu.UsageNanoCores == nil {
		t.Errorf("cpu: %v", cs.Cpu)
	}
	m := cs.Memory
	if m.GetTimestamp() <= 0 || m.WorkingSetBytes == nil || m.AvailableBytes == nil || m.UsageBytes == nil || m.RssBytes == nil || m.PageFaults == nil || m.MajorPageFaults == nil {
		t.Errorf("memory: %v", m)
	}
	if cs.Swap.GetTimestamp() <= 0 || cs.Swap.SwapUsageBytes == nil {
		t.Errorf("swap: %v", cs.Swap)
	}
	w := cs.WritableLayer
	if w.GetTimestamp() <= 0 || w.GetFsId().GetMountpoint() != mountpoint || w.UsedBytes == nil || w.InodesUsed == nil {
		t.Errorf("writable layer: %v", w)
	}
}

func TestContainerStats(t *testing.T) {
	exited := running("exited", "p")
	exited.Running = false
	raced := running("raced", "p") // running, but its cgroup is gone
	noLayer := running("nolayer", "p")
	noLayer.RootfsKey = "gone"
	broken := running("broken", "p")
	src := &fakeSource{containers: []ContainerInfo{running("c1", "p"), exited, raced, noLayer, broken}}
	cg := &fakeCgroups{
		byPath: map[string]stats.Cgroup{
			"/berth/c1":      reading(1e9, stats.Memory{Usage: 300, WorkingSet: 200, Limit: 1000, RSS: 150, PageFaults: 9, MajorPageFaults: 1}, 2),
			"/berth/nolayer": reading(0, stats.Memory{}, 1),
		},
		errs: map[string]error{"/berth/broken": errors.New("EIO")},
	}
	s := newTestService(src, cg, nil)
	ctx := context.Background()

	for _, tc := range []struct {
		id                 string
		wantCPU, wantWS    uint64
		wantBytes, wantErr bool
	}{
		{id: "c1", wantCPU: 15e8, wantWS: 200, wantBytes: true},
		{id: "exited", wantBytes: true},
		{id: "raced", wantBytes: true},
		{id: "nolayer", wantCPU: 5e8},
		{id: "broken", wantErr: true},
	} {
		t.Run(tc.id, func(t *testing.T) {
			resp, err := s.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: tc.id})
			if tc.wantErr {
				if err == nil {
					t.Fatal("no error for an unreadable cgroup")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cs := resp.Stats
			checkContainer(t, cs)
			if got := cs.Cpu.UsageCoreNanoSeconds.Value; got != tc.wantCPU {
				t.Errorf("cpu = %d, want %d", got, tc.wantCPU)
			}
			if got := cs.Memory.WorkingSetBytes.Value; got != tc.wantWS {
				t.Errorf("working set = %d, want %d", got, tc.wantWS)
			}
			if got := cs.WritableLayer.UsedBytes.Value > 0; got != tc.wantBytes {
				t.Errorf("writable layer bytes = %d", cs.WritableLayer.UsedBytes.Value)
			}
			if !maps.Equal(cs.Attributes.Annotations, map[string]string{"a": "b"}) {
				t.Errorf("annotations altered: %v", cs.Attributes.Annotations)
			}
		})
	}

	// c1: the first call was its first sample (0 nano cores, as
	// containerd); the fake advances 1s and 0.5 core-seconds per read.
	resp, _ := s.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: "c1"})
	if got := resp.Stats.Cpu.UsageNanoCores.Value; got != 5e8 {
		t.Errorf("second sample: %d nano cores, want 5e8", got)
	}
	if got := resp.Stats.Memory.AvailableBytes.Value; got != 800 {
		t.Errorf("available = %d, want limit - working set = 800", got)
	}
	if got := resp.Stats.Swap.SwapUsageBytes.Value; got != 7 {
		t.Errorf("swap = %d", got)
	}

	for _, tc := range []struct {
		id   string
		want error
	}{{"", errdefs.ErrInvalidArgument}, {"nope", errdefs.ErrNotFound}} {
		if _, err := s.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: tc.id}); !errors.Is(err, tc.want) {
			t.Errorf("ContainerStats(%q) = %v, want %v", tc.id, err, tc.want)
		}
	}
}

func TestListContainerStats(t *testing.T) {
	broken := running("broken", "p2")
	src := &fakeSource{containers: []ContainerInfo{running("a", "p1"), running("b", "p1"), broken}}
	cg := &fakeCgroups{
		byPath: map[string]stats.Cgroup{"/berth/a": reading(1, stats.Memory{}, 1), "/berth/b": reading(1, stats.Memory{}, 1)},
		errs:   map[string]error{"/berth/broken": errors.New("EIO")},
	}
	s := newTestService(src, cg, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		filter *runtimeapi.ContainerStatsFilter
		want   []string
	}{
		{"nil filter", nil, []string{"a", "b", "broken"}},
		{"empty filter", &runtimeapi.ContainerStatsFilter{}, []string{"a", "b", "broken"}},
		{"by id", &runtimeapi.ContainerStatsFilter{Id: "b"}, []string{"b"}},
		{"by pod", &runtimeapi.ContainerStatsFilter{PodSandboxId: "p2"}, []string{"broken"}},
		{"by label", &runtimeapi.ContainerStatsFilter{LabelSelector: map[string]string{"app": "p1"}}, []string{"a", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := s.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{Filter: tc.filter})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, cs := range resp.Stats {
				checkContainer(t, cs) // the broken one too: zeros, not a failed list
				got = append(got, cs.Attributes.Id)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}

	// b is removed: a filtered list keeps its sample, a full list drops it.
	src.containers = src.containers[:1]
	if _, err := s.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{Id: "a"}}); err != nil {
		t.Fatal(err)
	}
	if n := s.containerCPU.Len(); n != 2 {
		t.Fatalf("%d samples after a filtered list, want a and b", n)
	}
	if _, err := s.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{}); err != nil {
		t.Fatal(err)
	}
	if n := s.containerCPU.Len(); n != 1 {
		t.Fatalf("%d samples after a full list, want only a", n)
	}
}

// fakeStream collects what a server stream sends.
type fakeStream[T any] struct {
	grpc.ServerStream
	sent []*T
}

func (f *fakeStream[T]) Send(m *T) error          { f.sent = append(f.sent, m); return nil }
func (f *fakeStream[T]) Context() context.Context { return context.Background() }

func TestStreamStatsBatches(t *testing.T) {
	src := &fakeSource{}
	for i := range 250 {
		src.containers = append(src.containers, ContainerInfo{ID: fmt.Sprint(i)})
	}
	for i := range 101 {
		src.sandboxes = append(src.sandboxes, SandboxInfo{ID: fmt.Sprint(i)})
	}
	s := newTestService(src, &fakeCgroups{}, nil)
	cs := &fakeStream[runtimeapi.StreamContainerStatsResponse]{}
	if err := s.StreamContainerStats(&runtimeapi.StreamContainerStatsRequest{}, cs); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, m := range cs.sent {
		sizes = append(sizes, len(m.ContainerStats))
	}
	if !slices.Equal(sizes, []int{100, 100, 50}) {
		t.Errorf("container batches %v", sizes)
	}
	ps := &fakeStream[runtimeapi.StreamPodSandboxStatsResponse]{}
	if err := s.StreamPodSandboxStats(&runtimeapi.StreamPodSandboxStatsRequest{}, ps); err != nil {
		t.Fatal(err)
	}
	if len(ps.sent) != 2 || len(ps.sent[1].PodSandboxStats) != 1 {
		t.Errorf("sandbox batches: %d messages", len(ps.sent))
	}
	empty := &fakeStream[runtimeapi.StreamContainerStatsResponse]{}
	if err := s.StreamContainerStats(&runtimeapi.StreamContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{Id: "none"}}, empty); err != nil || len(empty.sent) != 0 {
		t.Errorf("empty stream: %d messages, %v", len(empty.sent), err)
	}
}

func TestPodSandboxStats(t *testing.T) {
	exited := running("x", "nocg")
	exited.Running = false
	net := &stats.Network{Time: time.Unix(5, 0), Interfaces: []stats.Interface{
		{Name: "eth0", RxBytes: 10, TxBytes: 20}, {Name: "net1", RxBytes: 1},
	}}
	odd := &stats.Network{Time: time.Unix(5, 0), Interfaces: []stats.Interface{{Name: "ens3", TxBytes: 4}}}
	src := &fakeSource{sandboxes: []SandboxInfo{
		{ID: "withcg", CgroupParent: "/kubepods/pod1", NetNS: "/ns/withcg", Containers: []ContainerInfo{running("c1", "withcg")}},
		{ID: "nocg", NetNS: "/ns/odd", Containers: []ContainerInfo{running("c2", "nocg"), running("c3", "nocg"), exited}},
		{ID: "hostnet", Containers: nil},
		{ID: "stopped", NetNS: "/ns/gone"},
	}}
	cg := &fakeCgroups{byPath: map[string]stats.Cgroup{
		"/kubepods/pod1": reading(3e9, stats.Memory{Usage: 1000, WorkingSet: 900, Limit: 2000}, 5),
		"/berth/c1":      reading(1e9, stats.Memory{WorkingSet: 100}, 1),
		"/berth/c2":      reading(1e9, stats.Memory{Usage: 50, WorkingSet: 40, RSS: 30, PageFaults: 2}, 2),
		"/berth/c3":      reading(2e9, stats.Memory{Usage: 60, WorkingSet: 50, RSS: 40, PageFaults: 3}, 3),
	}}
	s := newTestService(src, cg, map[string]*stats.Network{"/ns/withcg": net, "/ns/odd": odd})
	ctx := context.Background()

	get := func(id string) *runtimeapi.LinuxPodSandboxStats {
		t.Helper()
		resp, err := s.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: id})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Stats.Attributes.GetId() != id {
			t.Fatalf("attributes %v", resp.Stats.Attributes)
		}
		l := resp.Stats.Linux
		if l.Cpu.GetTimestamp() <= 0 || l.Memory.GetTimestamp() <= 0 || l.Process.GetTimestamp() <= 0 {
			t.Fatalf("missing timestamps: %v", l)
		}
		for _, c := range l.Containers {
			checkContainer(t, c)
		}
		return l
	}

	l := get("withcg")
	if l.Cpu.UsageCoreNanoSeconds.Value != 35e8 || l.Memory.WorkingSetBytes.Value != 900 || l.Memory.AvailableBytes.Value != 1100 || l.Process.ProcessCount.Value != 5 {
		t.Errorf("pod cgroup not used: %v", l)
	}
	if len(l.Containers) != 1 || l.Containers[0].Attributes.Id != "c1" {
		t.Errorf("containers: %v", l.Containers)
	}
	if d := l.Network.GetDefaultInterface(); d.GetName() != "eth0" || d.RxBytes.Value != 10 || d.TxBytes.Value != 20 {
		t.Errorf("default interface: %v", d)
	}
	if len(l.Network.Interfaces) != 1 || l.Network.Interfaces[0].Name != "net1" {
		t.Errorf("other interfaces (the default excluded): %v", l.Network.Interfaces)
	}

	l = get("nocg")
	// c2 + c3 after one read each (+0.5s each), x exited (zeros).
	if l.Cpu.UsageCoreNanoSeconds.Value != 4e9 || l.Memory.WorkingSetBytes.Value != 90 || l.Memory.UsageBytes.Value != 110 ||
		l.Memory.RssBytes.Value != 70 || l.Memory.PageFaults.Value != 5 || l.Process.ProcessCount.Value != 5 {
		t.Errorf("sum of containers: %v", l)
	}
	if len(l.Containers) != 3 {
		t.Errorf("containers: %d, want all three", len(l.Containers))
	}
	if d := l.Network.GetDefaultInterface(); d.GetName() != "ens3" || len(l.Network.Interfaces) != 0 {
		t.Errorf("no eth0: default must still be set (kubelet dereferences it): %v", l.Network)
	}

	if l = get("hostnet"); l.Network != nil {
		t.Errorf("host network pod has network stats: %v", l.Network)
	}
	if l = get("stopped"); l.Network != nil {
		t.Errorf("pod with its netns gone: %v", l.Network)
	}

	if _, err := s.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: "nope"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown pod: %v", err)
	}
	resp, err := s.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{Filter: &runtimeapi.PodSandboxStatsFilter{Id: "nocg"}})
	if err != nil || len(resp.Stats) != 1 {
		t.Fatalf("filtered list: %v %v", resp, err)
	}
	resp, err = s.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
	if err != nil || len(resp.Stats) != 4 {
		t.Fatalf("full list: %d, %v", len(resp.Stats), err)
	}
	if !strings.HasPrefix(resp.Stats[0].Attributes.Id, "withcg") {
		t.Errorf("order not kept: %v", resp.Stats[0].Attributes)
	}
}

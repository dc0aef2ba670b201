package stats

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/server"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/stats"
)

// critestMetricNames is critest v1.37.0's expectedMetricDescriptorNames
// (pkg/validate/pod.go).
var critestMetricNames = []string{
	"container_blkio_device_usage_total", "container_cpu_cfs_periods_total",
	"container_cpu_cfs_throttled_periods_total", "container_cpu_cfs_throttled_seconds_total",
	"container_cpu_system_seconds_total", "container_cpu_usage_seconds_total",
	"container_cpu_user_seconds_total", "container_file_descriptors", "container_fs_inodes_free",
	"container_fs_inodes_total", "container_fs_limit_bytes", "container_fs_reads_bytes_total",
	"container_fs_reads_total", "container_fs_usage_bytes", "container_fs_writes_bytes_total",
	"container_fs_writes_total", "container_hugetlb_max_usage_bytes", "container_hugetlb_usage_bytes",
	"container_last_seen", "container_memory_cache", "container_memory_failcnt",
	"container_memory_failures_total", "container_memory_kernel_usage", "container_memory_mapped_file",
	"container_memory_max_usage_bytes", "container_memory_rss", "container_memory_swap",
	"container_memory_usage_bytes", "container_memory_working_set_bytes",
	"container_network_receive_bytes_total", "container_network_receive_errors_total",
	"container_network_receive_packets_dropped_total", "container_network_receive_packets_total",
	"container_network_transmit_bytes_total", "container_network_transmit_errors_total",
	"container_network_transmit_packets_dropped_total", "container_network_transmit_packets_total",
	"container_oom_events_total", "container_pressure_cpu_stalled_seconds_total",
	"container_pressure_cpu_waiting_seconds_total", "container_pressure_io_stalled_seconds_total",
	"container_pressure_io_waiting_seconds_total", "container_pressure_memory_stalled_seconds_total",
	"container_pressure_memory_waiting_seconds_total", "container_processes", "container_sockets",
	"container_spec_cpu_period", "container_spec_cpu_quota", "container_spec_cpu_shares",
	"container_spec_memory_limit_bytes", "container_spec_memory_reservation_limit_bytes",
	"container_spec_memory_swap_limit_bytes", "container_start_time_seconds", "container_threads",
	"container_threads_max", "container_ulimits_soft",
}

// critestUnimplemented need no descriptor; critestOptional (and they) need
// no value.
var (
	critestUnimplemented = []string{
		"container_hugetlb_max_usage_bytes", "container_hugetlb_usage_bytes",
		"container_pressure_cpu_stalled_seconds_total", "container_pressure_cpu_waiting_seconds_total",
		"container_pressure_io_stalled_seconds_total", "container_pressure_io_waiting_seconds_total",
		"container_pressure_memory_stalled_seconds_total", "container_pressure_memory_waiting_seconds_total",
		"container_spec_cpu_quota", "container_spec_memory_reservation_limit_bytes", "container_ulimits_soft",
	}
	critestOptional = []string{
		"container_blkio_device_usage_total", "container_fs_reads_bytes_total", "container_fs_reads_total",
		"container_fs_writes_bytes_total", "container_fs_writes_total",
	}
)

func describe(t *testing.T, svc *Service) map[string]*runtimeapi.MetricDescriptor {
	t.Helper()
	resp, err := svc.ListMetricDescriptors(context.Background(), &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*runtimeapi.MetricDescriptor{}
	for _, d := range resp.GetDescriptors() {
		if _, dup := out[d.GetName()]; dup {
			t.Errorf("%s described twice", d.GetName())
		}
		out[d.GetName()] = d
	}
	return out
}

func TestListMetricDescriptors(t *testing.T) {
	descs := describe(t, newTestService(&fakeSource{}, &fakeCgroups{}, nil))
	for name, d := range descs {
		if d.GetHelp() == "" || len(d.GetLabelKeys()) == 0 {
			t.Errorf("%s: help %q, label keys %v", name, d.GetHelp(), d.GetLabelKeys())
		}
		if !slices.Equal(d.GetLabelKeys()[:len(baseLabels)], baseLabels) {
			t.Errorf("%s: label keys %v do not start with %v", name, d.GetLabelKeys(), baseLabels)
		}
	}
	for _, name := range critestMetricNames {
		if _, ok := descs[name]; !ok && !slices.Contains(critestUnimplemented, name) {
			t.Errorf("%s is not described", name)
		}
	}
}

// metricsFixture is one ready pod with a pod cgroup, a network and a
// running container, plus an exited container, which has no metrics.
func metricsFixture(psi *stats.Pressure) (*Service, SandboxInfo) {
	c := running("c1", "p1")
	exited := running("c2", "p1")
	exited.Running = false
	sb := SandboxInfo{
		ID: "p1", Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "ns"},
		CgroupParent: "/kubepods/podp1", NetNS: "/run/netns/p1",
		Containers: []ContainerInfo{c, exited},
	}
	cr := reading(3e9, stats.Memory{Usage: 100, WorkingSet: 80, Limit: 1 << 26, RSS: 60, PageFaults: 9, MajorPageFaults: 2}, 4)
	cr.PSI = psi
	cg := &fakeCgroups{byPath: map[string]stats.Cgroup{
		c.CgroupPath:    cr,
		sb.CgroupParent: reading(5e9, stats.Memory{Usage: 200}, 5),
	}}
	nets := map[string]*stats.Network{sb.NetNS: {Time: time.Unix(100, 0), Interfaces: []stats.Interface{
		{Name: "eth0", RxBytes: 10, TxBytes: 20, RxErrors: 1, TxErrors: 2},
	}}}
	return newTestService(&fakeSource{containers: sb.Containers, sandboxes: []SandboxInfo{sb}}, cg, nets), sb
}

// findMetric is the first metric named name at pod level or in a container.
func findMetric(pm *runtimeapi.PodSandboxMetrics, name string) *runtimeapi.Metric {
	all := slices.Clone(pm.GetMetrics())
	for _, cm := range pm.GetContainerMetrics() {
		all = append(all, cm.GetMetrics()...)
	}
	for _, m := range all {
		if m.GetName() == name {
			return m
		}
	}
	return nil
}

func TestListPodSandboxMetrics(t *testing.T) {
	for _, tc := range []struct {
		name string
		psi  *stats.Pressure
	}{
		{"no PSI", nil},
		{"PSI", &stats.Pressure{
			CPU:    &stats.PSI{Some: &stats.PSIData{Total: 3e9}, Full: &stats.PSIData{Total: 1e9}},
			Memory: &stats.PSI{Some: &stats.PSIData{}, Full: &stats.PSIData{}},
			IO:     &stats.PSI{Some: &stats.PSIData{}, Full: &stats.PSIData{}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc, sb := metricsFixture(tc.psi)
			descs := describe(t, svc)
			resp, err := svc.ListPodSandboxMetrics(context.Background(), &runtimeapi.ListPodSandboxMetricsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.GetPodMetrics()) != 1 {
				t.Fatalf("got %d pods, want 1", len(resp.GetPodMetrics()))
			}
			pm := resp.GetPodMetrics()[0]
			if pm.GetPodSandboxId() != sb.ID || len(pm.GetContainerMetrics()) != 1 || pm.GetContainerMetrics()[0].GetContainerId() != "c1" {
				t.Fatalf("pod %q containers %v, want p1 with c1 only", pm.GetPodSandboxId(), pm.GetContainerMetrics())
			}

			// Every value is described, with as many labels as keys.
			all := slices.Clone(pm.GetMetrics())
			for _, cm := range pm.GetContainerMetrics() {
				all = append(all, cm.GetMetrics()...)
			}
			for _, m := range all {
				d, ok := descs[m.GetName()]
				if !ok {
					t.Errorf("%s has a value but no descriptor", m.GetName())
					continue
				}
				if len(m.GetLabelValues()) != len(d.GetLabelKeys()) || m.GetValue() == nil {
					t.Errorf("%s: values %v for keys %v, value %v", m.GetName(), m.GetLabelValues(), d.GetLabelKeys(), m.GetValue())
				}
			}
			// critest's check: each required descriptor has a value.
			for name := range descs {
				if findMetric(pm, name) == nil && !slices.Contains(critestOptional, name) && !slices.Contains(critestUnimplemented, name) {
					t.Errorf("%s is described but has no value", name)
				}
			}

			for _, want := range []struct {
				name   string
				value  uint64
				labels []string
			}{
				{"container_cpu_usage_seconds_total", 5, []string{"", "/kubepods/podp1", "", "p1", "ns", "web", "total"}},
				{"container_memory_working_set_bytes", 0, []string{"", "/kubepods/podp1", "", "p1", "ns", "web"}},
				{"container_network_transmit_bytes_total", 20, []string{"", "/kubepods/podp1", "", "p1", "ns", "web", "eth0"}},
				{"container_fs_usage_bytes", 4096, []string{"c1", "/berth/c1", "", "c1", "ns", "web", mountpoint}},
			} {
				m := findMetric(pm, want.name)
				if m.GetValue().GetValue() != want.value || !slices.Equal(m.GetLabelValues(), want.labels) {
					t.Errorf("%s = %d %v, want %d %v", want.name, m.GetValue().GetValue(), m.GetLabelValues(), want.value, want.labels)
				}
			}
			c1 := pm.GetContainerMetrics()[0].GetMetrics()
			got := func(name string) uint64 {
				for _, m := range c1 {
					if m.GetName() == name {
						return m.GetValue().GetValue()
					}
				}
				return 1<<64 - 1
			}
			for name, want := range map[string]uint64{
				"container_cpu_usage_seconds_total":            3,
				"container_memory_working_set_bytes":           80,
				"container_spec_memory_limit_bytes":            1 << 26,
				"container_memory_swap":                        7,
				"container_threads":                            4,
				"container_pressure_cpu_waiting_seconds_total": map[bool]uint64{true: 3, false: 1<<64 - 1}[tc.psi != nil],
			} {
				if g := got(name); g != want {
					t.Errorf("container %s = %d, want %d", name, g, want)
				}
			}
		})
	}
}

func TestStreamPodSandboxMetricsBatches(t *testing.T) {
	var sbs []SandboxInfo
	for i := range server.StreamBatch + 1 {
		sbs = append(sbs, SandboxInfo{ID: fmt.Sprintf("p%d", i)})
	}
	svc := newTestService(&fakeSource{sandboxes: sbs}, &fakeCgroups{}, nil)
	var stream fakeStream[runtimeapi.StreamPodSandboxMetricsResponse]
	if err := svc.StreamPodSandboxMetrics(&runtimeapi.StreamPodSandboxMetricsRequest{}, &stream); err != nil {
		t.Fatal(err)
	}
	var n int
	for _, m := range stream.sent {
		n += len(m.GetPodSandboxMetrics())
	}
	if len(stream.sent) != 2 || n != server.StreamBatch+1 {
		t.Errorf("sent %d messages with %d pods, want 2 with %d", len(stream.sent), n, server.StreamBatch+1)
	}
}

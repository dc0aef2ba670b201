package stats

import (
	"context"
	"errors"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/logctx"
	"github.com/berth-cri/berth/internal/server"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/stats"
)

// The CRI metrics RPCs carry cAdvisor's container_* families, so kubelet
// can serve /metrics/cadvisor from the runtime instead of running
// cAdvisor's container walk. Names, types and label keys follow cAdvisor's
// so that dashboards and alerts keep working.
//
// Every family is served from what berth reads anyway: the container's
// cgroup (stats.Cgroup), the pod's network namespace, the writable layer
// cache and a statfs of the layer filesystem. Where berth has no source a
// family is still reported, as 0, so kubelet sees one consistent set:
//
//   - container_cpu_user_seconds_total, container_cpu_system_seconds_total,
//     container_cpu_cfs_periods_total, container_cpu_cfs_throttled_*:
//     the cgroup reader keeps only total CPU usage.
//   - container_memory_cache, _failcnt, _kernel_usage, _mapped_file and
//     _max_usage_bytes.
//   - container_oom_events_total on cgroup v1 (v2: memory.events oom_kill).
//   - container_network_*_packets_total and *_packets_dropped_total: the
//     pod network reader keeps bytes and errors only.
//   - container_file_descriptors, container_sockets, container_threads_max,
//     container_start_time_seconds, container_spec_cpu_period and
//     container_spec_cpu_shares.
//
// Described but valued only where the source exists, as cAdvisor does:
// container_blkio_device_usage_total and container_fs_{reads,writes}*
// from v2's io.stat, one value per device the cgroup used (v1's blkio is
// not read), and container_pressure_* on hosts with PSI (v2, the kernel's
// CONFIG_PSI and not psi=0). Left out entirely: hugetlb, ulimits,
// container_spec_cpu_quota and container_spec_memory_reservation_limit_bytes.
//
// CRI metric values are integers, so seconds are whole seconds.

// baseLabels are cAdvisor's container labels as kubelet sets them: the
// container's name, its cgroup (id), its runtime name (name), its image,
// and its pod.
var baseLabels = []string{"container", "id", "image", "name", "namespace", "pod"}

// family is one metric's descriptor: its label keys are baseLabels and then
// extra, and every value lists its label values in that order.
type family struct {
	name, help string
	typ        runtimeapi.MetricType
	extra      []string
}

const (
	counter = runtimeapi.MetricType_COUNTER
	gauge   = runtimeapi.MetricType_GAUGE
)

var (
	fsLabels    = []string{"device"}
	netLabels   = []string{"interface"}
	noneLabels  = []string(nil)
	blkioLabels = []string{"device", "major", "minor", "operation"}
)

// families is every metric berth describes, in the order they are emitted.
// It is read-only after init.
var families = []family{
	{"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", counter, []string{"cpu"}},
	{"container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", counter, noneLabels},
	{"container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", counter, noneLabels},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", counter, noneLabels},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", counter, noneLabels},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", counter, noneLabels},
	{"container_memory_cache", "Number of bytes of page cache memory.", gauge, noneLabels},
	{"container_memory_failcnt", "Number of memory usage hits limits.", counter, noneLabels},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures.", counter, []string{"failure_type", "scope"}},
	{"container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", gauge, noneLabels},
	{"container_memory_mapped_file", "Size of memory mapped files in bytes.", gauge, noneLabels},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes.", gauge, noneLabels},
	{"container_memory_rss", "Size of RSS in bytes.", gauge, noneLabels},
	{"container_memory_swap", "Container swap usage in bytes.", gauge, noneLabels},
	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", gauge, noneLabels},
	{"container_memory_working_set_bytes", "Current working set in bytes.", gauge, noneLabels},
	{"container_oom_events_total", "Count of out of memory events observed for the container.", counter, noneLabels},
	{"container_processes", "Number of processes running inside the container.", gauge, noneLabels},
	{"container_threads", "Number of threads running inside the container.", gauge, noneLabels},
	{"container_threads_max", "Maximum number of threads allowed inside the container, infinity if value is zero.", gauge, noneLabels},
	{"container_file_descriptors", "Number of open file descriptors for the container.", gauge, noneLabels},
	{"container_sockets", "Number of open sockets for the container.", gauge, noneLabels},
	{"container_spec_cpu_period", "CPU period of the container.", gauge, noneLabels},
	{"container_spec_cpu_shares", "CPU share of the container.", gauge, noneLabels},
	{"container_spec_memory_limit_bytes", "Memory limit for the container.", gauge, noneLabels},
	{"container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", gauge, noneLabels},
	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", gauge, noneLabels},
	{"container_last_seen", "Last time a container was seen by the exporter.", gauge, noneLabels},
	{"container_pressure_cpu_waiting_seconds_total", "Total time duration tasks in the container have waited due to CPU congestion.", counter, noneLabels},
	{"container_pressure_cpu_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to CPU congestion.", counter, noneLabels},
	{"container_pressure_memory_waiting_seconds_total", "Total time duration tasks in the container have waited due to memory congestion.", counter, noneLabels},
	{"container_pressure_memory_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to memory congestion.", counter, noneLabels},
	{"container_pressure_io_waiting_seconds_total", "Total time duration tasks in the container have waited due to IO congestion.", counter, noneLabels},
	{"container_pressure_io_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to IO congestion.", counter, noneLabels},
	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", gauge, fsLabels},
	{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", gauge, fsLabels},
	{"container_fs_inodes_total", "Number of Inodes.", gauge, fsLabels},
	{"container_fs_inodes_free", "Number of available Inodes.", gauge, fsLabels},
	{"container_fs_reads_total", "Cumulative count of reads completed.", counter, fsLabels},
	{"container_fs_reads_bytes_total", "Cumulative count of bytes read.", counter, fsLabels},
	{"container_fs_writes_total", "Cumulative count of writes completed.", counter, fsLabels},
	{"container_fs_writes_bytes_total", "Cumulative count of bytes written.", counter, fsLabels},
	{"container_blkio_device_usage_total", "Blkio device bytes usage.", counter, blkioLabels},
	{"container_network_receive_bytes_total", "Cumulative count of bytes received.", counter, netLabels},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", counter, netLabels},
	{"container_network_receive_packets_total", "Cumulative count of packets received.", counter, netLabels},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.", counter, netLabels},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", counter, netLabels},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.", counter, netLabels},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted.", counter, netLabels},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.", counter, netLabels},
}

// familyByName indexes families; read-only after init.
var familyByName = func() map[string]family {
	m := make(map[string]family, len(families))
	for _, f := range families {
		m[f.name] = f
	}
	return m
}()

// ListMetricDescriptors describes every family ListPodSandboxMetrics
// reports.
func (s *Service) ListMetricDescriptors(ctx context.Context, req *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	out := make([]*runtimeapi.MetricDescriptor, 0, len(families))
	for _, f := range families {
		keys := append(append([]string{}, baseLabels...), f.extra...)
		out = append(out, &runtimeapi.MetricDescriptor{Name: f.name, Help: f.help, LabelKeys: keys})
	}
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: out}, nil
}

// ListPodSandboxMetrics returns the metrics of every pod and of its running
// containers.
func (s *Service) ListPodSandboxMetrics(ctx context.Context, req *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	return &runtimeapi.ListPodSandboxMetricsResponse{PodMetrics: s.listPodMetrics(ctx)}, nil
}

// StreamPodSandboxMetrics is ListPodSandboxMetrics in batches.
func (s *Service) StreamPodSandboxMetrics(req *runtimeapi.StreamPodSandboxMetricsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxMetricsResponse]) error {
	items := s.listPodMetrics(stream.Context())
	return server.SendBatches(items, func(b []*runtimeapi.PodSandboxMetrics) error {
		return stream.Send(&runtimeapi.StreamPodSandboxMetricsResponse{PodSandboxMetrics: b})
	})
}

// layerFS is the layer filesystem's size, measured once per list: every
// writable layer lives on it.
type layerFS struct {
	device                    string
	limit, inodes, inodesFree uint64
}

func (s *Service) statLayerFS(ctx context.Context) layerFS {
	fs := layerFS{device: s.layerMountpoint}
	if s.layerMountpoint == "" {
		return fs
	}
	var st unix.Statfs_t
	if err := unix.Statfs(s.layerMountpoint, &st); err != nil {
		logctx.G(ctx, s.log).WithError(err).Warn("statfs of the layer filesystem")
		return fs
	}
	fs.limit = st.Blocks * uint64(st.Bsize)
	fs.inodes, fs.inodesFree = st.Files, st.Ffree
	return fs
}

// listPodMetrics, like listSandboxStats, never fails as a whole: what
// cannot be read is left out and logged.
func (s *Service) listPodMetrics(ctx context.Context) []*runtimeapi.PodSandboxMetrics {
	infos := s.src.Sandboxes(nil)
	fs := s.statLayerFS(ctx)
	now := time.Now()
	out := make([]*runtimeapi.PodSandboxMetrics, 0, len(infos))
	for _, sb := range infos {
		out = append(out, s.podMetrics(ctx, sb, fs, now))
	}
	return out
}

// podMetrics is the pod's own cgroup and network at pod level, labelled as
// cAdvisor labels a pod cgroup (container ""), and each running container.
func (s *Service) podMetrics(ctx context.Context, sb SandboxInfo, fs layerFS, now time.Time) *runtimeapi.PodSandboxMetrics {
	pod := metricSet{base: []string{"", sb.CgroupParent, "", sb.ID, sb.Metadata.GetNamespace(), sb.Metadata.GetName()}}
	if sb.CgroupParent != "" {
		if cg, ok := s.readCgroup(ctx, sb.CgroupParent, "sandbox", sb.ID); ok {
			pod.cgroup(cg, now, s.blockDevice)
		}
	}
	if sb.NetNS != "" {
		n, err := s.network(sb.NetNS)
		switch {
		case err == nil:
			pod.network(n)
		case !errors.Is(err, errdefs.ErrNotFound):
			logctx.G(ctx, s.log).WithError(err).WithField("sandbox", sb.ID).Warn("network metrics")
		}
	}
	out := &runtimeapi.PodSandboxMetrics{PodSandboxId: sb.ID, Metrics: pod.metrics}
	for _, c := range sb.Containers {
		if cm := s.containerMetrics(ctx, sb, c, fs, now); cm != nil {
			out.ContainerMetrics = append(out.ContainerMetrics, cm)
		}
	}
	return out
}

// containerMetrics is nil for a container with no cgroup to read: cAdvisor
// reports live cgroups only.
func (s *Service) containerMetrics(ctx context.Context, sb SandboxInfo, c ContainerInfo, fs layerFS, now time.Time) *runtimeapi.ContainerMetrics {
	if !c.Running || c.CgroupPath == "" {
		return nil
	}
	cg, ok := s.readCgroup(ctx, c.CgroupPath, "container", c.ID)
	if !ok {
		return nil
	}
	set := metricSet{base: []string{c.Metadata.GetName(), c.CgroupPath, c.Image, c.ID, sb.Metadata.GetNamespace(), sb.Metadata.GetName()}}
	set.cgroup(cg, now, s.blockDevice)
	s.layerMetrics(ctx, &set, c, fs)
	return &runtimeapi.ContainerMetrics{ContainerId: c.ID, Metrics: set.metrics}
}

// readCgroup reads one cgroup; one that is gone (it exited while we looked)
// is skipped quietly, other failures are logged.
func (s *Service) readCgroup(ctx context.Context, path, kind, id string) (stats.Cgroup, bool) {
	cg, err := s.cgroups.Read(path)
	if err != nil {
		if !errors.Is(err, errdefs.ErrNotFound) {
			logctx.G(ctx, s.log).WithError(err).WithField(kind, id).Warn("cgroup metrics")
		}
		return stats.Cgroup{}, false
	}
	return cg, true
}

// layerMetrics adds the writable layer's filesystem usage. A measurement
// from the layer cache carries its time, as the CRI asks of cached values.
func (s *Service) layerMetrics(ctx context.Context, set *metricSet, c ContainerInfo, fs layerFS) {
	var used uint64
	var at int64
	if c.RootfsKey != "" {
		lu, measured, err := s.layers.Get(c.RootfsKey)
		switch {
		case err == nil:
			used, at = uint64(max(lu.Bytes, 0)), measured.UnixNano()
		case !errors.Is(err, errdefs.ErrNotFound):
			logctx.G(ctx, s.log).WithError(err).WithField("container", c.ID).Warn("writable layer metrics")
		}
	}
	set.addAt("container_fs_usage_bytes", used, at, fs.device)
	set.add("container_fs_limit_bytes", fs.limit, fs.device)
	set.add("container_fs_inodes_total", fs.inodes, fs.device)
	set.add("container_fs_inodes_free", fs.inodesFree, fs.device)
}

// metricSet collects the metrics of one cgroup under one set of base label
// values.
type metricSet struct {
	base    []string
	metrics []*runtimeapi.Metric
}

// add appends a live value (timestamp 0); extra are the family's extra
// label values, in its order.
func (m *metricSet) add(name string, v uint64, extra ...string) { m.addAt(name, v, 0, extra...) }

func (m *metricSet) addAt(name string, v uint64, at int64, extra ...string) {
	f, ok := familyByName[name]
	if !ok || len(extra) != len(f.extra) {
		// A programming error, which the unit test catches: a value whose
		// labels do not match its descriptor is left out, not sent.
		return
	}
	values := append(append(make([]string, 0, len(m.base)+len(extra)), m.base...), extra...)
	m.metrics = append(m.metrics, &runtimeapi.Metric{
		Name: name, Timestamp: at, MetricType: f.typ, LabelValues: values, Value: u64(v),
	})
}

// blockDevice names a block device for the IO metrics' device label,
// looked up in sysfs once per device.
func (s *Service) blockDevice(major, minor uint64) string {
	key := [2]uint64{major, minor}
	if v, ok := s.devices.Load(key); ok {
		return v.(string)
	}
	name := s.deviceName(major, minor)
	s.devices.Store(key, name)
	return name
}

// cgroup adds the families read from a cgroup, and last_seen; device names
// the block devices of its IO.
func (m *metricSet) cgroup(cg stats.Cgroup, now time.Time, device func(major, minor uint64) string) {
	m.add("container_cpu_usage_seconds_total", cg.CPUUsageNanos/uint64(time.Second), "total")
	for _, name := range []string{
		"container_cpu_user_seconds_total", "container_cpu_system_seconds_total",
		"container_cpu_cfs_periods_total", "container_cpu_cfs_throttled_periods_total",
		"container_cpu_cfs_throttled_seconds_total",
		"container_memory_cache", "container_memory_failcnt", "container_memory_kernel_usage",
		"container_memory_mapped_file", "container_memory_max_usage_bytes",
		"container_threads_max", "container_file_descriptors", "container_sockets",
		"container_spec_cpu_period", "container_spec_cpu_shares", "container_start_time_seconds",
	} {
		m.add(name, 0)
	}

	mem := cg.Memory
	if mem == nil {
		mem = &stats.Memory{}
	}
	// The reader's fault counts are hierarchical (total_pgfault on v1,
	// memory.stat on v2): cAdvisor's "hierarchy" scope.
	m.add("container_memory_failures_total", mem.PageFaults, "pgfault", "hierarchy")
	m.add("container_memory_failures_total", mem.MajorPageFaults, "pgmajfault", "hierarchy")
	m.add("container_memory_rss", mem.RSS)
	m.add("container_memory_usage_bytes", mem.Usage)
	m.add("container_memory_working_set_bytes", mem.WorkingSet)
	m.add("container_spec_memory_limit_bytes", mem.Limit)

	swap := cg.Swap
	if swap == nil {
		swap = &stats.Swap{}
	}
	m.add("container_memory_swap", swap.Usage)
	m.add("container_spec_memory_swap_limit_bytes", swap.Limit)

	var pids uint64
	if cg.Pids != nil {
		pids = *cg.Pids
	}
	// pids.current counts tasks, threads included: the best figure for
	// both, as no per-process count is read.
	m.add("container_processes", pids)
	m.add("container_threads", pids)

	var ooms uint64
	if e := cg.MemoryEvents; e != nil {
		ooms = e.OOMKill
	}
	m.add("container_oom_events_total", ooms)

	m.io(cg.IO, device)
	m.pressure(cg.PSI)
	m.add("container_last_seen", uint64(now.Unix()))
}

// io adds each device's IO: operations and bytes per direction, and the
// bytes again as blkio usage (cAdvisor's "Read"/"Write" operations).
func (m *metricSet) io(devs []stats.IODevice, device func(major, minor uint64) string) {
	for _, d := range devs {
		name := device(d.Major, d.Minor)
		m.add("container_fs_reads_total", d.ReadOps, name)
		m.add("container_fs_reads_bytes_total", d.ReadBytes, name)
		m.add("container_fs_writes_total", d.WriteOps, name)
		m.add("container_fs_writes_bytes_total", d.WriteBytes, name)
		major, minor := strconv.FormatUint(d.Major, 10), strconv.FormatUint(d.Minor, 10)
		m.add("container_blkio_device_usage_total", d.ReadBytes, name, major, minor, "Read")
		m.add("container_blkio_device_usage_total", d.WriteBytes, name, major, minor, "Write")
	}
}

// pressure adds the PSI totals, "some" as waiting and "full" as stalled,
// when the host has PSI.
func (m *metricSet) pressure(p *stats.Pressure) {
	if p == nil {
		return
	}
	for _, r := range []struct {
		psi  *stats.PSI
		name string
	}{{p.CPU, "cpu"}, {p.Memory, "memory"}, {p.IO, "io"}} {
		if r.psi == nil {
			continue
		}
		if r.psi.Some != nil {
			m.add("container_pressure_"+r.name+"_waiting_seconds_total", r.psi.Some.Total/uint64(time.Second))
		}
		if r.psi.Full != nil {
			m.add("container_pressure_"+r.name+"_stalled_seconds_total", r.psi.Full.Total/uint64(time.Second))
		}
	}
}

// network adds each interface's counters. Packets and drops are not read:
// 0.
func (m *metricSet) network(n *stats.Network) {
	for _, i := range n.Interfaces {
		m.add("container_network_receive_bytes_total", i.RxBytes, i.Name)
		m.add("container_network_receive_errors_total", i.RxErrors, i.Name)
		m.add("container_network_receive_packets_total", 0, i.Name)
		m.add("container_network_receive_packets_dropped_total", 0, i.Name)
		m.add("container_network_transmit_bytes_total", i.TxBytes, i.Name)
		m.add("container_network_transmit_errors_total", i.TxErrors, i.Name)
		m.add("container_network_transmit_packets_total", 0, i.Name)
		m.add("container_network_transmit_packets_dropped_total", 0, i.Name)
	}
}

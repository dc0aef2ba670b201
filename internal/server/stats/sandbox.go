package stats

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/logctx"
	"github.com/berth-cri/berth/internal/server"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/stats"
)

// PodSandboxStats returns one pod's stats; an unknown pod is NotFound.
func (s *Service) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	if req.GetPodSandboxId() == "" {
		return nil, fmt.Errorf("pod sandbox id is empty: %w", errdefs.ErrInvalidArgument)
	}
	sb, err := s.src.Sandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	ps, err := s.sandboxStats(ctx, sb)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: ps}, nil
}

// ListPodSandboxStats returns the stats of the pods matching the filter.
func (s *Service) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: s.listSandboxStats(ctx, req.GetFilter())}, nil
}

// StreamPodSandboxStats is ListPodSandboxStats in batches.
func (s *Service) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxStatsResponse]) error {
	items := s.listSandboxStats(stream.Context(), req.GetFilter())
	return server.SendBatches(items, func(b []*runtimeapi.PodSandboxStats) error {
		return stream.Send(&runtimeapi.StreamPodSandboxStatsResponse{PodSandboxStats: b})
	})
}

// listSandboxStats, like listContainerStats, reports what it can of a pod
// it cannot fully read instead of failing the list.
func (s *Service) listSandboxStats(ctx context.Context, f *runtimeapi.PodSandboxStatsFilter) []*runtimeapi.PodSandboxStats {
	infos := s.src.Sandboxes(f)
	out := make([]*runtimeapi.PodSandboxStats, 0, len(infos))
	for _, sb := range infos {
		ps, err := s.sandboxStats(ctx, sb)
		if err != nil {
			logctx.G(ctx, s.log).WithError(err).WithField("sandbox", sb.ID).Warn("pod sandbox stats")
			ps = s.sandboxStatsFromContainers(ctx, sb)
		}
		out = append(out, ps)
	}
	if f.GetId() == "" && len(f.GetLabelSelector()) == 0 {
		ids := make(map[string]struct{}, len(infos))
		var containers []ContainerInfo
		for _, sb := range infos {
			ids[sb.ID] = struct{}{}
			containers = append(containers, sb.Containers...)
		}
		s.sandboxCPU.Retain(ids)
		s.retainContainers(containers)
	}
	return out
}

// sandboxStats reads the pod cgroup when kubelet gave one: it holds every
// container and the pod's overhead. Without one (or when it is gone) the
// pod is the sum of its containers.
func (s *Service) sandboxStats(ctx context.Context, sb SandboxInfo) (*runtimeapi.PodSandboxStats, error) {
	if sb.CgroupParent == "" {
		return s.sandboxStatsFromContainers(ctx, sb), nil
	}
	cg, err := s.cgroups.Read(sb.CgroupParent)
	if errors.Is(err, errdefs.ErrNotFound) {
		s.sandboxCPU.Forget(sb.ID)
		return s.sandboxStatsFromContainers(ctx, sb), nil
	}
	if err != nil {
		return nil, fmt.Errorf("stats of pod sandbox %s: %w", sb.ID, err)
	}
	linux := &runtimeapi.LinuxPodSandboxStats{
		Cpu:     cpuUsage(cg.Time, cg.CPUUsageNanos, s.sandboxCPU.NanoCores(sb.ID, cg.Time, cg.CPUUsageNanos), pressure(cg.PSI, cpuPSI)),
		Memory:  memoryUsage(cg.Time, cg.Memory, pressure(cg.PSI, memoryPSI)),
		Process: processUsage(cg.Time, cg.Pids),
		Io:      ioUsage(cg.Time, cg.PSI),
		Network: s.networkStats(ctx, sb),
	}
	linux.Containers, _ = s.podContainers(ctx, sb)
	return &runtimeapi.PodSandboxStats{Attributes: sandboxAttributes(sb), Linux: linux}, nil
}

// sandboxStatsFromContainers sums the pod's containers. available_bytes is
// left 0: the pod's limit is not known without its cgroup.
func (s *Service) sandboxStatsFromContainers(ctx context.Context, sb SandboxInfo) *runtimeapi.PodSandboxStats {
	now := time.Now()
	containers, procs := s.podContainers(ctx, sb)
	var cpu, cores uint64
	var mem stats.Memory
	for _, cs := range containers {
		cpu += cs.GetCpu().GetUsageCoreNanoSeconds().GetValue()
		cores += cs.GetCpu().GetUsageNanoCores().GetValue()
		m := cs.GetMemory()
		mem.Usage += m.GetUsageBytes().GetValue()
		mem.WorkingSet += m.GetWorkingSetBytes().GetValue()
		mem.RSS += m.GetRssBytes().GetValue()
		mem.PageFaults += m.GetPageFaults().GetValue()
		mem.MajorPageFaults += m.GetMajorPageFaults().GetValue()
	}
	linux := &runtimeapi.LinuxPodSandboxStats{
		Cpu:        cpuUsage(now, cpu, cores, nil),
		Memory:     memoryUsage(now, &mem, nil),
		Process:    processUsage(now, &procs),
		Network:    s.networkStats(ctx, sb),
		Containers: containers,
	}
	return &runtimeapi.PodSandboxStats{Attributes: sandboxAttributes(sb), Linux: linux}
}

// podContainers is linux.containers, each container's own stats, and the
// sum of their task counts.
func (s *Service) podContainers(ctx context.Context, sb SandboxInfo) ([]*runtimeapi.ContainerStats, uint64) {
	out := make([]*runtimeapi.ContainerStats, 0, len(sb.Containers))
	var pids uint64
	for _, c := range sb.Containers {
		cs, n := s.containerStatsOrZero(ctx, c)
		out = append(out, cs)
		pids += n
	}
	return out, pids
}

// networkStats is nil for a host-network pod and for a pod whose namespace
// cannot be read (stopped: its network is torn down).
func (s *Service) networkStats(ctx context.Context, sb SandboxInfo) *runtimeapi.NetworkUsage {
	if sb.NetNS == "" {
		return nil
	}
	n, err := s.network(sb.NetNS)
	if err != nil {
		if !errors.Is(err, errdefs.ErrNotFound) {
			logctx.G(ctx, s.log).WithError(err).WithField("sandbox", sb.ID).Warn("network stats")
		}
		return nil
	}
	return networkUsage(n)
}

func processUsage(at time.Time, pids *uint64) *runtimeapi.ProcessUsage {
	var n uint64
	if pids != nil {
		n = *pids
	}
	return &runtimeapi.ProcessUsage{Timestamp: at.UnixNano(), ProcessCount: u64(n)}
}

func sandboxAttributes(sb SandboxInfo) *runtimeapi.PodSandboxAttributes {
	return &runtimeapi.PodSandboxAttributes{
		Id:          sb.ID,
		Metadata:    sb.Metadata,
		Labels:      sb.Labels,
		Annotations: sb.Annotations,
	}
}

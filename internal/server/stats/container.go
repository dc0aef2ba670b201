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

// ContainerStats returns one container's stats; an unknown container is
// NotFound.
func (s *Service) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	if req.GetContainerId() == "" {
		return nil, fmt.Errorf("container id is empty: %w", errdefs.ErrInvalidArgument)
	}
	c, err := s.src.Container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	cs, _, err := s.containerStats(ctx, c)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatsResponse{Stats: cs}, nil
}

// ListContainerStats returns the stats of the containers matching the
// filter, running and exited.
func (s *Service) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	return &runtimeapi.ListContainerStatsResponse{Stats: s.listContainerStats(ctx, req.GetFilter())}, nil
}

// StreamContainerStats is ListContainerStats in batches, for nodes whose
// list would not fit one message.
func (s *Service) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainerStatsResponse]) error {
	items := s.listContainerStats(stream.Context(), req.GetFilter())
	return server.SendBatches(items, func(b []*runtimeapi.ContainerStats) error {
		return stream.Send(&runtimeapi.StreamContainerStatsResponse{ContainerStats: b})
	})
}

// listContainerStats never fails as a whole: one container whose cgroup
// cannot be read is reported with zeros (and logged) rather than costing
// kubelet the stats of the whole node.
func (s *Service) listContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) []*runtimeapi.ContainerStats {
	infos := s.src.Containers(f)
	out := make([]*runtimeapi.ContainerStats, 0, len(infos))
	for _, c := range infos {
		cs, _ := s.containerStatsOrZero(ctx, c)
		out = append(out, cs)
	}
	if f.GetId() == "" && f.GetPodSandboxId() == "" && len(f.GetLabelSelector()) == 0 {
		s.retainContainers(infos)
	}
	return out
}

// retainContainers drops the CPU samples and layer measurements of
// containers that are gone, after a list that saw every container.
func (s *Service) retainContainers(infos []ContainerInfo) {
	ids := make(map[string]struct{}, len(infos))
	keys := make(map[string]struct{}, len(infos))
	for _, c := range infos {
		ids[c.ID] = struct{}{}
		if c.RootfsKey != "" {
			keys[c.RootfsKey] = struct{}{}
		}
	}
	s.containerCPU.Retain(ids)
	s.layers.Retain(keys)
}

func (s *Service) containerStatsOrZero(ctx context.Context, c ContainerInfo) (*runtimeapi.ContainerStats, uint64) {
	cs, pids, err := s.containerStats(ctx, c)
	if err != nil {
		logctx.G(ctx, s.log).WithError(err).WithField("container", c.ID).Warn("container stats")
		return s.zeroContainerStats(ctx, c, time.Now()), 0
	}
	return cs, pids
}

// containerStats reads c's cgroup and writable layer. It also returns the
// container's task count, which the CRI carries per pod only.
//
// An exited container, or one whose cgroup is already gone (it exited
// while we looked), has zero CPU and memory with a timestamp, not an error:
// kubelet lists exited containers too and fills the same zeros itself when
// a runtime leaves them out.
func (s *Service) containerStats(ctx context.Context, c ContainerInfo) (*runtimeapi.ContainerStats, uint64, error) {
	if !c.Running || c.CgroupPath == "" {
		s.containerCPU.Forget(c.ID)
		return s.zeroContainerStats(ctx, c, time.Now()), 0, nil
	}
	cg, err := s.cgroups.Read(c.CgroupPath)
	if errors.Is(err, errdefs.ErrNotFound) {
		s.containerCPU.Forget(c.ID)
		return s.zeroContainerStats(ctx, c, time.Now()), 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("stats of container %s: %w", c.ID, err)
	}
	var pids uint64
	if cg.Pids != nil {
		pids = *cg.Pids
	}
	return s.fromCgroup(ctx, c, cg), pids, nil
}

func (s *Service) fromCgroup(ctx context.Context, c ContainerInfo, cg stats.Cgroup) *runtimeapi.ContainerStats {
	nanoCores := s.containerCPU.NanoCores(c.ID, cg.Time, cg.CPUUsageNanos)
	return &runtimeapi.ContainerStats{
		Attributes:    containerAttributes(c),
		Cpu:           cpuUsage(cg.Time, cg.CPUUsageNanos, nanoCores, pressure(cg.PSI, cpuPSI)),
		Memory:        memoryUsage(cg.Time, cg.Memory, pressure(cg.PSI, memoryPSI)),
		Swap:          swapUsage(cg.Time, cg.Swap),
		Io:            ioUsage(cg.Time, cg.PSI),
		WritableLayer: s.writableLayer(ctx, c),
	}
}

func (s *Service) zeroContainerStats(ctx context.Context, c ContainerInfo, now time.Time) *runtimeapi.ContainerStats {
	return &runtimeapi.ContainerStats{
		Attributes:    containerAttributes(c),
		Cpu:           cpuUsage(now, 0, 0, nil),
		Memory:        memoryUsage(now, nil, nil),
		Swap:          swapUsage(now, nil),
		WritableLayer: s.writableLayer(ctx, c),
	}
}

func containerAttributes(c ContainerInfo) *runtimeapi.ContainerAttributes {
	return &runtimeapi.ContainerAttributes{
		Id:          c.ID,
		Metadata:    c.Metadata,
		Labels:      c.Labels,
		Annotations: c.Annotations,
	}
}

// writableLayer is always set, with the snapshot store's mountpoint as
// fs_id (the one ImageFsInfo reports, so kubelet finds its capacity). A
// layer that cannot be measured (removed, or never made) reads as empty.
func (s *Service) writableLayer(ctx context.Context, c ContainerInfo) *runtimeapi.FilesystemUsage {
	var u struct{ bytes, inodes int64 }
	at := time.Now()
	if c.RootfsKey != "" {
		lu, measured, err := s.layers.Get(c.RootfsKey)
		switch {
		case err == nil:
			u.bytes, u.inodes, at = lu.Bytes, lu.Inodes, measured
		case !errors.Is(err, errdefs.ErrNotFound):
			logctx.G(ctx, s.log).WithError(err).WithField("container", c.ID).Warn("writable layer usage")
		}
	}
	return &runtimeapi.FilesystemUsage{
		Timestamp:  at.UnixNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: s.layerMountpoint},
		UsedBytes:  u64(uint64(max(u.bytes, 0))),
		InodesUsed: u64(uint64(max(u.inodes, 0))),
	}
}

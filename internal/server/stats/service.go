// Package stats is the CRI edge of container and pod stats: ContainerStats,
// ListContainerStats, StreamContainerStats, PodSandboxStats,
// ListPodSandboxStats and StreamPodSandboxStats.
//
// ListMetricDescriptors, ListPodSandboxMetrics and StreamPodSandboxMetrics
// serve cAdvisor's container_* families from the same readings (see
// metrics.go for which are always 0 for want of a source).
package stats

import (
	"io"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/stats"
)

// Source lists what stats are about. Implemented by the container and
// sandbox services.
type Source interface {
	// Containers lists running and exited containers matching the filter
	// (id, pod id, labels); nil matches all.
	Containers(filter *runtimeapi.ContainerStatsFilter) []ContainerInfo
	// Container finds one container by id or unique id prefix; an unknown
	// one is errdefs.ErrNotFound.
	Container(id string) (ContainerInfo, error)
	Sandboxes(filter *runtimeapi.PodSandboxStatsFilter) []SandboxInfo
	Sandbox(id string) (SandboxInfo, error)
}

// ContainerInfo is what stats need to know about a container.
type ContainerInfo struct {
	ID, SandboxID       string
	Metadata            *runtimeapi.ContainerMetadata
	Labels, Annotations map[string]string
	// CgroupPath is the container's path in the cgroup hierarchy, e.g.
	// /berth/<id> or /kubepods/.../<id>; "" if none.
	CgroupPath string
	// RootfsKey is the container's key in the snapshot store.
	RootfsKey string
	// Image is the container's image as the user named it (metrics label).
	Image   string
	Running bool
}

// SandboxInfo is what stats need to know about a pod sandbox.
type SandboxInfo struct {
	ID                  string
	Metadata            *runtimeapi.PodSandboxMetadata
	Labels, Annotations map[string]string
	// CgroupParent is the pod cgroup kubelet made; "" if none.
	CgroupParent string
	// NetNS is the pinned network namespace; "" is the host network, for
	// which no network stats are reported (as containerd does: they would
	// be the node's).
	NetNS      string
	Containers []ContainerInfo
}

// Deps is what the service reads from.
type Deps struct {
	Source  Source
	Cgroups stats.CgroupReader
	// LayerUsage measures a writable layer: the snapshot store's
	// RootfsUsage.
	LayerUsage stats.LayerUsage
	// LayerMountpoint is the snapshot store's Mountpoint: the fs_id that
	// ImageFsInfo reports, so kubelet charges writable layers to the
	// image filesystem it knows.
	LayerMountpoint string
	// LayerTTL is how long a writable layer measurement is reused; 0 is
	// DefaultLayerTTL.
	LayerTTL time.Duration
	// Network reads a pod's network namespace; nil is stats.ReadNetwork.
	Network func(nsPath string) (*stats.Network, error)
	// BlockDevice names a block device for the IO metrics; nil is
	// stats.BlockDevice.
	BlockDevice func(major, minor uint64) string
	Log         logrus.FieldLogger
}

// DefaultLayerTTL matches kubelet's stats period: each housekeeping round
// sees a measurement at most one round old.
const DefaultLayerTTL = 10 * time.Second

// Service serves the stats RPCs. It is safe for concurrent use.
type Service struct {
	src             Source
	cgroups         stats.CgroupReader
	layers          *stats.LayerCache
	layerMountpoint string
	network         func(string) (*stats.Network, error)
	deviceName      func(major, minor uint64) string
	log             logrus.FieldLogger

	// devices caches deviceName: [2]uint64{major, minor} -> name.
	devices sync.Map

	// Container and pod CPU rates are sampled apart: a pod id and a
	// container id never share a window.
	containerCPU *stats.Sampler
	sandboxCPU   *stats.Sampler
}

// New returns the service.
func New(d Deps) *Service {
	ttl := d.LayerTTL
	if ttl == 0 {
		ttl = DefaultLayerTTL
	}
	network := d.Network
	if network == nil {
		network = stats.ReadNetwork
	}
	deviceName := d.BlockDevice
	if deviceName == nil {
		deviceName = stats.BlockDevice
	}
	log := d.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	return &Service{
		src:             d.Source,
		cgroups:         d.Cgroups,
		layers:          stats.NewLayerCache(d.LayerUsage, ttl),
		layerMountpoint: d.LayerMountpoint,
		network:         network,
		deviceName:      deviceName,
		log:             log,
		containerCPU:    stats.NewSampler(),
		sandboxCPU:      stats.NewSampler(),
	}
}

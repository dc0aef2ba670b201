// Package stats reads what kubelet's summary API needs about containers and
// pods: cgroup CPU, memory, swap, process and PSI figures, CPU rates from
// successive samples, writable-layer usage and a pod's network counters.
// It speaks no CRI types; internal/server/stats turns these into replies.
package stats

import (
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3"
)

// Cgroup is one read of a cgroup, the same for cgroup v1 and v2. A nil
// pointer field means the host does not offer that figure (no swap
// accounting, no PSI on v1, a controller not mounted).
type Cgroup struct {
	// Time is when the files were read.
	Time time.Time
	// CPUUsageNanos is the cumulative CPU time of every task, all cores.
	CPUUsageNanos uint64
	Memory        *Memory
	Swap          *Swap
	// Pids is the number of tasks (pids.current), nil without pids controller.
	Pids *uint64
	// PSI is pressure stall information; v2 only.
	PSI *Pressure
	// IO is the block IO of each device the cgroup used (io.stat); v2 only
	// (v1's blkio is not read), empty when nothing was read or written.
	IO []IODevice
	// MemoryEvents are the memory.events counters; v2 only.
	MemoryEvents *MemoryEvents
}

// IODevice is the cumulative IO of a cgroup on one block device.
type IODevice struct {
	Major, Minor          uint64
	ReadBytes, WriteBytes uint64
	ReadOps, WriteOps     uint64
}

// MemoryEvents counts what the memory controller did to a cgroup and its
// descendants.
type MemoryEvents struct {
	// High is how often memory.high throttled, Max how often usage hit
	// memory.max, OOM how often that failed to reclaim.
	High, Max, OOM uint64
	// OOMKill is the number of processes the OOM killer killed (any OOM:
	// the cgroup's, an ancestor's or the whole node's), OOMGroupKill the
	// number of group kills (memory.oom.group; kernel 5.17+).
	OOMKill, OOMGroupKill uint64
}

// Memory is the memory figures kubelet uses.
type Memory struct {
	Usage uint64
	// WorkingSet is usage minus inactive file pages: kubelet's definition,
	// what its eviction manager compares with the limit.
	WorkingSet uint64
	// Limit is 0 when the cgroup has no limit.
	Limit           uint64
	RSS             uint64
	PageFaults      uint64
	MajorPageFaults uint64
}

// Available is the limit minus the working set, 0 when unlimited (as
// containerd reports it: kubelet reads 0 as "no figure").
func (m *Memory) Available() uint64 {
	if m.Limit == 0 || m.WorkingSet >= m.Limit {
		return 0
	}
	return m.Limit - m.WorkingSet
}

// Swap is swap usage; Limit is 0 when unlimited.
type Swap struct {
	Usage uint64
	Limit uint64
}

// Available is the limit minus usage, 0 when unlimited.
func (s *Swap) Available() uint64 {
	if s.Limit == 0 || s.Usage >= s.Limit {
		return 0
	}
	return s.Limit - s.Usage
}

// Pressure is the PSI of the three resources; a nil field was not readable.
type Pressure struct {
	CPU, Memory, IO *PSI
}

// PSI is one pressure file. Totals are in nanoseconds (the CRI unit; the
// kernel counts microseconds), averages in percent.
type PSI struct {
	Some, Full *PSIData
}

// PSIData is one line of a pressure file.
type PSIData struct {
	Total                uint64
	Avg10, Avg60, Avg300 float64
}

// unlimited is the size above which a memory limit means "none": the kernel
// rounds "max" to a page multiple below MaxInt64, so no exact value works.
const unlimited = uint64(1 << 62)

func limitOrZero(v uint64) uint64 {
	if v > unlimited {
		return 0
	}
	return v
}

// workingSet is usage minus inactive file pages, never below zero.
func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile >= usage {
		return 0
	}
	return usage - inactiveFile
}

// CgroupReader reads a cgroup given its path in the cgroup hierarchy
// ("/berth/<id>", "/kubepods/burstable/pod<uid>/<id>"). A cgroup that does
// not exist is errdefs.ErrNotFound. Implementations are safe for concurrent
// use.
type CgroupReader interface {
	Read(path string) (Cgroup, error)
}

// NewCgroupReader returns the reader for this host's cgroup mode: v2 on a
// unified hierarchy, v1 otherwise (legacy and hybrid hosts have the
// controllers on v1).
func NewCgroupReader() (CgroupReader, error) {
	switch cgroups.Mode() {
	case cgroups.Unified:
		return NewV2Reader(defaultV2Mountpoint), nil
	case cgroups.Legacy, cgroups.Hybrid:
		return NewV1Reader(defaultV1Root), nil
	default:
		return nil, fmt.Errorf("no cgroup filesystem mounted at /sys/fs/cgroup")
	}
}

// cgroupPath turns a path as the runtime or kubelet wrote it into a path in
// the hierarchy. kubelet with the systemd cgroup driver names the pod cgroup
// by its slice ("kubepods-burstable-pod<uid>.slice"), which systemd places
// under every ancestor slice its dashes name.
func cgroupPath(p string) string {
	if strings.HasPrefix(p, "/") || !strings.HasSuffix(p, ".slice") {
		return p
	}
	name := strings.TrimSuffix(p, ".slice")
	dir := "/"
	for i := range len(name) {
		if name[i] == '-' && i > 0 {
			dir = path.Join(dir, name[:i]+".slice")
		}
	}
	return path.Join(dir, p)
}

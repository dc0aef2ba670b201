package stats

import (
	"errors"
	"fmt"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"

	"github.com/berth-cri/berth/internal/errdefs"
)

const defaultV1Root = "/sys/fs/cgroup"

// V1Reader reads cgroup v1 controllers mounted under one root.
type V1Reader struct {
	// subsystems is built once: cgroup1's default hierarchy parses
	// /proc/self/mountinfo and stats thirteen controllers (blkio, hugetlb,
	// rdma...) on every Load, which is most of the cost of a stats call
	// and none of its use. Only cpuacct, memory and pids are read, and
	// memory skips the kmem files kubelet never shows.
	subsystems []cgroup1.Subsystem
}

// NewV1Reader returns a reader for the v1 controllers mounted at
// root/<controller> (root is /sys/fs/cgroup on every distribution).
func NewV1Reader(root string) *V1Reader {
	return &V1Reader{subsystems: []cgroup1.Subsystem{
		cgroup1.NewCpuacct(root),
		// OptionalSwap drops memsw when the kernel does not account swap
		// (swapaccount=0); it looks at root once, here.
		cgroup1.NewMemory(root, cgroup1.IgnoreModules("kmem", "kmem.tcp"), cgroup1.OptionalSwap()),
		cgroup1.NewPids(root),
	}}
}

func (r *V1Reader) hierarchy() ([]cgroup1.Subsystem, error) { return r.subsystems, nil }

// Read reads the cgroup at p in each controller. Controllers p does not
// exist in are skipped (a cgroup made without pids has no pids figure); p
// missing from all of them is ErrNotFound.
func (r *V1Reader) Read(p string) (Cgroup, error) {
	p = cgroupPath(p)
	cg, err := cgroup1.Load(cgroup1.StaticPath(p), cgroup1.WithHierarchy(r.hierarchy))
	if err != nil {
		if errors.Is(err, cgroup1.ErrCgroupDeleted) {
			return Cgroup{}, fmt.Errorf("cgroup %s: %w", p, errdefs.ErrNotFound)
		}
		return Cgroup{}, fmt.Errorf("load cgroup %s: %w", p, err)
	}
	now := time.Now()
	// IgnoreNotExist: the cgroup may be removed between Load and Stat when
	// the container exits; what was read is still right.
	m, err := cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return Cgroup{}, fmt.Errorf("stat cgroup %s: %w", p, err)
	}
	return fromV1(now, m), nil
}

func fromV1(now time.Time, m *v1stats.Metrics) Cgroup {
	c := Cgroup{Time: now}
	if m.CPU != nil && m.CPU.Usage != nil {
		c.CPUUsageNanos = m.CPU.Usage.Total
	}
	if mem := m.Memory; mem != nil && mem.Usage != nil {
		// The total_* keys include child cgroups: a pod cgroup's own
		// counters hold only what was charged before its containers moved
		// in.
		c.Memory = &Memory{
			Usage:           mem.Usage.Usage,
			WorkingSet:      workingSet(mem.Usage.Usage, mem.TotalInactiveFile),
			Limit:           limitOrZero(mem.Usage.Limit),
			RSS:             mem.TotalRSS,
			PageFaults:      mem.TotalPgFault,
			MajorPageFaults: mem.TotalPgMajFault,
		}
		// memsw counts memory plus swap, so swap is the difference (the
		// lib leaves Swap zeroed when swap is not accounted).
		if sw := mem.Swap; sw != nil && sw.Usage > 0 {
			c.Swap = &Swap{Usage: sw.Usage - min(sw.Usage, mem.Usage.Usage)}
			if l := limitOrZero(sw.Limit); l > 0 {
				c.Swap.Limit = l - min(l, c.Memory.Limit)
			}
		}
	}
	if m.Pids != nil {
		n := m.Pids.Current
		c.Pids = &n
	}
	return c
}

package stats

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"

	"github.com/berth-cri/berth/internal/errdefs"
)

const defaultV2Mountpoint = "/sys/fs/cgroup"

// V2Reader reads cgroups of a unified (v2) hierarchy.
type V2Reader struct {
	mountpoint string
}

// NewV2Reader returns a reader for the cgroup2 filesystem at mountpoint
// (/sys/fs/cgroup on a unified host; a hybrid host has an empty one at
// /sys/fs/cgroup/unified, which the tests use).
func NewV2Reader(mountpoint string) *V2Reader {
	return &V2Reader{mountpoint: mountpoint}
}

// v2Mask leaves out rdma and hugetlb, which neither the CRI nor the
// metrics have a field for.
const v2Mask = cgroup2.StatPids | cgroup2.StatCPU | cgroup2.StatMemory | cgroup2.StatMemoryEvents | cgroup2.StatIO

// Read reads the cgroup at p; a missing cgroup is ErrNotFound.
func (r *V2Reader) Read(p string) (Cgroup, error) {
	p = cgroupPath(p)
	// cgroup2.Load does not look at the filesystem, and the lib reads a
	// missing file as 0: check the cgroup exists so that a removed one is
	// not reported as idle.
	if _, err := os.Lstat(filepath.Join(r.mountpoint, p)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Cgroup{}, fmt.Errorf("cgroup %s: %w", p, errdefs.ErrNotFound)
		}
		return Cgroup{}, fmt.Errorf("cgroup %s: %w", p, err)
	}
	cg, err := cgroup2.Load(p, cgroup2.WithMountpoint(r.mountpoint))
	if err != nil {
		return Cgroup{}, fmt.Errorf("load cgroup %s: %w", p, err)
	}
	now := time.Now()
	m, err := cg.StatFiltered(v2Mask)
	if err != nil {
		return Cgroup{}, fmt.Errorf("stat cgroup %s: %w", p, err)
	}
	return fromV2(now, m), nil
}

func fromV2(now time.Time, m *v2stats.Metrics) Cgroup {
	c := Cgroup{Time: now, PSI: &Pressure{}}
	if m.CPU != nil {
		c.CPUUsageNanos = m.CPU.UsageUsec * 1000
		c.PSI.CPU = fromV2PSI(m.CPU.PSI)
	}
	// The lib reads a missing file as 0 and "max" as MaxUint64, and every
	// non-root cgroup with the controller enabled has memory.max and
	// pids.max: a zero limit means the controller is off for this cgroup.
	if mem := m.Memory; mem != nil {
		if mem.UsageLimit > 0 {
			c.Memory = &Memory{
				Usage:           mem.Usage,
				WorkingSet:      workingSet(mem.Usage, mem.InactiveFile),
				Limit:           limitOrZero(mem.UsageLimit),
				RSS:             mem.Anon,
				PageFaults:      mem.Pgfault,
				MajorPageFaults: mem.Pgmajfault,
			}
		}
		// memory.swap.max is missing where swap is not accounted
		// (swapaccount=0): no swap figure then. With accounting but no
		// swap device, usage is a true 0.
		if mem.SwapLimit > 0 {
			c.Swap = &Swap{Usage: mem.SwapUsage, Limit: limitOrZero(mem.SwapLimit)}
		}
		c.PSI.Memory = fromV2PSI(mem.PSI)
	}
	if m.Pids != nil && m.Pids.Limit > 0 {
		n := m.Pids.Current
		c.Pids = &n
	}
	if m.Io != nil {
		c.PSI.IO = fromV2PSI(m.Io.PSI)
		for _, d := range m.Io.Usage {
			c.IO = append(c.IO, IODevice{
				Major: d.Major, Minor: d.Minor,
				ReadBytes: d.Rbytes, WriteBytes: d.Wbytes, ReadOps: d.Rios, WriteOps: d.Wios,
			})
		}
	}
	if e := m.MemoryEvents; e != nil { // nil: no memory controller
		c.MemoryEvents = &MemoryEvents{High: e.High, Max: e.Max, OOM: e.Oom, OOMKill: e.OomKill, OOMGroupKill: e.OomGroupKill}
	}
	if c.PSI.CPU == nil && c.PSI.Memory == nil && c.PSI.IO == nil {
		c.PSI = nil // kernel without CONFIG_PSI, or psi=0
	}
	return c
}

func fromV2PSI(p *v2stats.PSIStats) *PSI {
	if p == nil {
		return nil
	}
	data := func(d *v2stats.PSIData) *PSIData {
		if d == nil {
			return nil
		}
		// The kernel's totals are microseconds; the CRI's are nanoseconds.
		return &PSIData{Total: d.Total * 1000, Avg10: d.Avg10, Avg60: d.Avg60, Avg300: d.Avg300}
	}
	return &PSI{Some: data(p.Some), Full: data(p.Full)}
}

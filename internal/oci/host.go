package oci

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/apparmor"
	"github.com/berth-cri/berth/internal/cgroupdriver"
)

// Host holds the facts about the node that shape every spec. ProbeHost fills
// it once at berthd start; tests build it by hand.
type Host struct {
	// BoundingCaps are the capability names ("CAP_CHOWN"...) in berthd's own
	// bounding set. Privileged containers and "ALL" get exactly these, and
	// every other set is intersected with them: runc cannot grant a
	// capability berthd does not hold (capset fails with EPERM).
	BoundingCaps []string
	// OOMScoreAdj is berthd's own oom_score_adj. Without CAP_SYS_RESOURCE a
	// child may not go below it, so lower requests are clamped up to it.
	OOMScoreAdj int
	// CgroupV2 is true on a unified hierarchy.
	CgroupV2 bool
	// CgroupDriver is the cgroup driver cmd/berthd resolved at start; it
	// decides the form of every cgroupsPath ("" is cgroupfs). ProbeHost
	// leaves it unset: it follows the config, not only the node.
	CgroupDriver cgroupdriver.Driver
	// Controllers are the cgroup v2 controllers the kernel offers (the root's
	// cgroup.controllers): the ones libcontainer enables down to a
	// container's cgroup. Empty on v1.
	Controllers []string
	// Hugetlb is true when a hugetlb controller is there to take limits: a
	// mounted v1 hierarchy, or "hugetlb" among the v2 Controllers. Without
	// it the hugepage limits kubelet sends (one per page size, zeros
	// included) are skipped.
	Hugetlb bool
	// SwapAccounting is true when swap limits can be applied (memory.memsw.*
	// on v1, memory.swap.max on v2).
	SwapAccounting bool
	// SeccompEnabled is true when the kernel supports seccomp filters.
	SeccompEnabled bool
	// KernelRelease is the kernel's release ("6.1.0-18-amd64"): seccomp
	// profile rules may depend on the kernel version.
	KernelRelease string
	// AppArmorEnabled is true when AppArmor is enabled on the host.
	AppArmorEnabled bool
	// AppArmorDefault is the AppArmor profile of RuntimeDefault processes:
	// the one cmd/berthd loaded at start (internal/apparmor), "" for none.
	// ProbeHost leaves it unset: it follows the config.
	AppArmorDefault string
	// AppArmorLoaded says whether a profile is loaded in the kernel, so a
	// Localhost profile that is not fails the create instead of the start;
	// nil skips the check (tests).
	AppArmorLoaded func(name string) (bool, error)
	// Devices returns the device nodes at a host path: one for a device
	// file, every device below a directory. Used for CRI devices and for the
	// host devices of privileged containers (Devices("/dev")).
	Devices func(path string) ([]specs.LinuxDevice, error)
}

// ProbeHost reads the host facts from /proc and /sys.
func ProbeHost() (Host, error) {
	h := Host{Devices: HostDevices}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return h, fmt.Errorf("probe host: %w", err)
	}
	h.BoundingCaps, err = parseCapBnd(status)
	if err != nil {
		return h, fmt.Errorf("probe host: %w", err)
	}
	h.SeccompEnabled = bytes.Contains(status, []byte("\nSeccomp:"))
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return h, fmt.Errorf("probe host: uname: %w", err)
	}
	h.KernelRelease = unix.ByteSliceToString(uts.Release[:])
	adj, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return h, fmt.Errorf("probe host: %w", err)
	}
	if h.OOMScoreAdj, err = strconv.Atoi(strings.TrimSpace(string(adj))); err != nil {
		return h, fmt.Errorf("probe host: oom_score_adj %q: %w", adj, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		h.CgroupV2 = true
	}
	if h.CgroupV2 {
		h.Controllers, h.SwapAccounting, err = probeCgroupV2("/sys/fs/cgroup")
		if err != nil {
			return h, fmt.Errorf("probe host: %w", err)
		}
		h.Hugetlb = slices.Contains(h.Controllers, "hugetlb")
	} else {
		h.Hugetlb = exists("/sys/fs/cgroup/hugetlb")
		h.SwapAccounting = exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	}
	if b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled"); err == nil {
		h.AppArmorEnabled = strings.TrimSpace(string(b)) == "Y"
	}
	if h.AppArmorEnabled {
		h.AppArmorLoaded = apparmor.NewLoader().Loaded
	}
	return h, nil
}

// probeCgroupV2 reads the controllers a unified hierarchy mounted at root
// offers, and whether swap is accounted. The root cgroup has no memory.*
// limit files, so swap is judged from its children: one with memory.max
// but no memory.swap.max means the kernel does not account swap
// (swapaccount=0, cgroup.memory=noswap). With no child using the memory
// controller yet it is assumed, the kernel's default.
func probeCgroupV2(root string) (controllers []string, swap bool, err error) {
	b, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return nil, false, fmt.Errorf("cgroup v2 controllers: %w", err)
	}
	controllers = strings.Fields(string(b))
	if !slices.Contains(controllers, "memory") {
		return controllers, false, nil
	}
	withMemory, _ := filepath.Glob(filepath.Join(root, "*", "memory.max"))
	if len(withMemory) == 0 {
		return controllers, true, nil
	}
	return controllers, exists(filepath.Join(filepath.Dir(withMemory[0]), "memory.swap.max")), nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// parseCapBnd turns the CapBnd line of /proc/self/status into capability
// names. Bits the table does not know (a newer kernel) are left out: runc
// would not know them either.
func parseCapBnd(status []byte) ([]string, error) {
	for _, line := range strings.Split(string(status), "\n") {
		v, ok := strings.CutPrefix(line, "CapBnd:")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("CapBnd %q: %w", v, err)
		}
		var caps []string
		for bit, name := range capNames {
			if mask&(1<<uint(bit)) != 0 {
				caps = append(caps, name)
			}
		}
		return caps, nil
	}
	return nil, fmt.Errorf("no CapBnd line in /proc/self/status")
}

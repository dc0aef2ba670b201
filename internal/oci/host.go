package oci

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
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
	// HugetlbV1 is true when a cgroup v1 hugetlb controller is mounted;
	// without it hugepage limits (kubelet sends zero limits for every page
	// size) are skipped.
	HugetlbV1 bool
	// SwapAccounting is true when swap limits can be applied (memory.memsw.*
	// on v1).
	SwapAccounting bool
	// SeccompEnabled is true when the kernel supports seccomp filters.
	SeccompEnabled bool
	// AppArmorEnabled is true when AppArmor is enabled on the host.
	AppArmorEnabled bool
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
		// Swap accounting is always compiled into cgroup v2 memory control.
		h.SwapAccounting = exists("/sys/fs/cgroup/cgroup.controllers")
	} else {
		h.HugetlbV1 = exists("/sys/fs/cgroup/hugetlb")
		h.SwapAccounting = exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	}
	if b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled"); err == nil {
		h.AppArmorEnabled = strings.TrimSpace(string(b)) == "Y"
	}
	return h, nil
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

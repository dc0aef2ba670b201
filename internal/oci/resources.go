package oci

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cgroupdriver"
	"github.com/berth-cri/berth/internal/errdefs"
)

// DefaultCgroupParent is the cgroup parent when the CRI gives none (critest
// does so with the cgroupfs driver). Sandboxes and containers of such pods
// are siblings below it. With the systemd driver they go in
// cgroupdriver.DefaultSlice instead.
const DefaultCgroupParent = "/berth"

// cgroupsPath is the OCI cgroupsPath of sandbox or container id below the
// CRI cgroup parent. cgroupfs: the absolute path <parent>/<id>. systemd:
// "<slice>:berth:<id>", the scope berth-<id>.scope in the slice the parent
// names; a parent naming no slice (a cgroupfs path, as a kubelet set to
// the other driver sends) is refused before anything is made.
func cgroupsPath(driver cgroupdriver.Driver, parent, id string) (string, error) {
	if driver == cgroupdriver.Systemd {
		p, err := cgroupdriver.ScopePath(parent, id)
		if err != nil {
			return "", fmt.Errorf("linux.cgroup_parent (systemd cgroup driver): %w: %w", err, errdefs.ErrInvalidArgument)
		}
		return p, nil
	}
	if parent == "" {
		parent = DefaultCgroupParent
	}
	if hasNUL(parent) {
		return "", fmt.Errorf("cgroup_parent %q contains a NUL byte: %w", parent, errdefs.ErrInvalidArgument)
	}
	// path.Join cleans "..": a parent can never climb out of the hierarchy.
	return path.Join("/", parent, id), nil
}

var (
	cpusetRE   = regexp.MustCompile(`^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$`)
	pageSizeRE = regexp.MustCompile(`^[0-9]+[KMGTP]?B$`)
)

// linuxResources converts the CRI resources. Zero means "not specified" for
// every CRI field.
func linuxResources(h Host, r *runtimeapi.LinuxContainerResources) (*specs.LinuxResources, error) {
	out := &specs.LinuxResources{}
	if r == nil {
		return out, nil
	}
	bad := func(field string, v any) error {
		return fmt.Errorf("resources.%s %v is invalid: %w", field, v, errdefs.ErrInvalidArgument)
	}
	cpu := &specs.LinuxCPU{}
	switch s := r.GetCpuShares(); {
	case s < 0:
		return nil, bad("cpu_shares", s)
	case s > 0:
		v := uint64(s)
		cpu.Shares = &v
	}
	switch q := r.GetCpuQuota(); {
	case q < -1:
		return nil, bad("cpu_quota", q)
	case q != 0: // -1 = unlimited
		cpu.Quota = &q
	}
	switch p := r.GetCpuPeriod(); {
	case p < 0:
		return nil, bad("cpu_period", p)
	case p > 0:
		v := uint64(p)
		cpu.Period = &v
	}
	if s := r.GetCpusetCpus(); s != "" {
		if !cpusetRE.MatchString(s) {
			return nil, bad("cpuset_cpus", fmt.Sprintf("%q", s))
		}
		cpu.Cpus = s
	}
	if s := r.GetCpusetMems(); s != "" {
		if !cpusetRE.MatchString(s) {
			return nil, bad("cpuset_mems", fmt.Sprintf("%q", s))
		}
		cpu.Mems = s
	}
	if *cpu != (specs.LinuxCPU{}) {
		out.CPU = cpu
	}

	mem := &specs.LinuxMemory{}
	switch l := r.GetMemoryLimitInBytes(); {
	case l < 0:
		return nil, bad("memory_limit_in_bytes", l)
	case l > 0:
		mem.Limit = &l
	}
	// kubelet sends the swap limit on every container where memsw exists;
	// without swap accounting the cgroup file is absent, so leave it out.
	switch s := r.GetMemorySwapLimitInBytes(); {
	case s < -1:
		return nil, bad("memory_swap_limit_in_bytes", s)
	case s != 0 && h.SwapAccounting:
		mem.Swap = &s
	}
	if mem.Limit != nil || mem.Swap != nil {
		out.Memory = mem
	}

	for i, hp := range r.GetHugepageLimits() {
		if !pageSizeRE.MatchString(hp.GetPageSize()) {
			return nil, bad(fmt.Sprintf("hugepage_limits[%d].page_size", i), fmt.Sprintf("%q", hp.GetPageSize()))
		}
		// kubelet sends a limit per page size the node has, zeros included,
		// whether or not a hugetlb controller exists (none on this fleet's
		// v1 hosts; on v2 the kernel may be built without it). Skipping is
		// the only option there: libcontainer would fail on the missing
		// hugetlb.<size>.max file.
		if h.Hugetlb {
			out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: hp.GetPageSize(), Limit: hp.GetLimit()})
		}
	}
	if u := r.GetUnified(); len(u) > 0 {
		if !h.CgroupV2 {
			return nil, fmt.Errorf("resources.unified is only valid on cgroup v2, this host runs v1: %w", errdefs.ErrInvalidArgument)
		}
		out.Unified = make(map[string]string, len(u))
		for k, v := range u {
			if err := checkUnified(h, k, v); err != nil {
				return nil, err
			}
			out.Unified[k] = v
		}
	}
	return out, nil
}

// unifiedCgroupFiles are the core cgroup.* files a unified map may set:
// limits. The others (cgroup.procs, .freeze, .kill, .type,
// .subtree_control...) move, stop or reshape the cgroup, which is the
// runtime's business.
var unifiedCgroupFiles = map[string]bool{"cgroup.max.depth": true, "cgroup.max.descendants": true}

// checkUnified refuses a unified entry libcontainer could not apply, with
// the reason, before anything is created. libcontainer writes every key to
// <cgroup>/<key> on both its managers (the systemd one first turns the keys
// it knows into unit properties), and a file of a controller the kernel
// does not offer is missing, which it reports only as a failed write. Its
// value is passed as is: the kernel is the judge of values, and its error
// comes back with the key.
func checkUnified(h Host, k, v string) error {
	ctrl, param, ok := strings.Cut(k, ".")
	if !ok || ctrl == "" || param == "" || strings.ContainsAny(k, "/\x00") || hasNUL(v) {
		return fmt.Errorf("resources.unified key %q is not a cgroup file name CONTROLLER.PARAMETER: %w", k, errdefs.ErrInvalidArgument)
	}
	switch {
	case ctrl == "cgroup":
		if !unifiedCgroupFiles[k] {
			return fmt.Errorf("resources.unified key %q is not a resource limit: %w", k, errdefs.ErrInvalidArgument)
		}
	case !slices.Contains(h.Controllers, ctrl):
		return fmt.Errorf("resources.unified key %q: the %s controller is not available on this host (it has %s): %w",
			k, ctrl, strings.Join(h.Controllers, " "), errdefs.ErrInvalidArgument)
	case strings.HasPrefix(k, "memory.swap.") && !h.SwapAccounting:
		return fmt.Errorf("resources.unified key %q: this host does not account swap: %w", k, errdefs.ErrInvalidArgument)
	}
	return nil
}

// oomScoreAdj validates a CRI oom_score_adj and clamps it up to berthd's
// own: the kernel refuses a lower value without CAP_SYS_RESOURCE.
func oomScoreAdj(h Host, v int64) (int, error) {
	if v < -1000 || v > 1000 {
		return 0, fmt.Errorf("resources.oom_score_adj %d is outside [-1000, 1000]: %w", v, errdefs.ErrInvalidArgument)
	}
	return max(int(v), h.OOMScoreAdj), nil
}

// LinuxResources converts CRI resources to OCI ones with the same rules as
// ContainerSpec, for UpdateContainerResources.
func LinuxResources(h Host, r *runtimeapi.LinuxContainerResources) (*specs.LinuxResources, error) {
	return linuxResources(h, r)
}

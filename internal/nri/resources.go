package nri

import (
	"maps"

	"github.com/containerd/nri/pkg/api"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fromCRIResources is NRI's view of CRI resources: a zero CRI field is
// "not set", so it stays unset for plugins too.
func fromCRIResources(r *runtimeapi.LinuxContainerResources) *api.LinuxResources {
	if r == nil {
		return nil
	}
	out := &api.LinuxResources{
		Cpu:    &api.LinuxCPU{Cpus: r.GetCpusetCpus(), Mems: r.GetCpusetMems()},
		Memory: &api.LinuxMemory{},
	}
	if v := r.GetCpuPeriod(); v != 0 {
		out.Cpu.Period = api.UInt64(v)
	}
	if v := r.GetCpuQuota(); v != 0 {
		out.Cpu.Quota = api.Int64(v)
	}
	if v := r.GetCpuShares(); v != 0 {
		out.Cpu.Shares = api.UInt64(v)
	}
	if v := r.GetMemoryLimitInBytes(); v != 0 {
		out.Memory.Limit = api.Int64(v)
	}
	if v := r.GetMemorySwapLimitInBytes(); v != 0 {
		out.Memory.Swap = api.Int64(v)
	}
	for _, h := range r.GetHugepageLimits() {
		out.HugepageLimits = append(out.HugepageLimits, &api.HugepageLimit{PageSize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	out.Unified = maps.Clone(r.GetUnified())
	return out
}

// mergeResources returns cur with the fields r sets replaced: plugins'
// updates name only what they change. The CRI has no pids or device
// limits; what it cannot carry is left out.
func mergeResources(cur *runtimeapi.LinuxContainerResources, r *api.LinuxResources) *runtimeapi.LinuxContainerResources {
	out := &runtimeapi.LinuxContainerResources{}
	if cur != nil {
		out = proto.Clone(cur).(*runtimeapi.LinuxContainerResources)
	}
	if r == nil {
		return out
	}
	if c := r.GetCpu(); c != nil {
		if v := c.GetPeriod().Get(); v != nil {
			out.CpuPeriod = int64(*v)
		}
		if v := c.GetQuota().Get(); v != nil {
			out.CpuQuota = *v
		}
		if v := c.GetShares().Get(); v != nil {
			out.CpuShares = int64(*v)
		}
		if c.GetCpus() != "" {
			out.CpusetCpus = c.GetCpus()
		}
		if c.GetMems() != "" {
			out.CpusetMems = c.GetMems()
		}
	}
	if m := r.GetMemory(); m != nil {
		if v := m.GetLimit().Get(); v != nil {
			out.MemoryLimitInBytes = *v
		}
		if v := m.GetSwap().Get(); v != nil {
			out.MemorySwapLimitInBytes = *v
		}
	}
	for _, h := range r.GetHugepageLimits() {
		replaced := false
		for _, have := range out.HugepageLimits {
			if have.PageSize == h.GetPageSize() {
				have.Limit, replaced = h.GetLimit(), true
			}
		}
		if !replaced {
			out.HugepageLimits = append(out.HugepageLimits, &runtimeapi.HugepageLimit{PageSize: h.GetPageSize(), Limit: h.GetLimit()})
		}
	}
	for k, v := range r.GetUnified() {
		if out.Unified == nil {
			out.Unified = map[string]string{}
		}
		out.Unified[k] = v
	}
	return out
}

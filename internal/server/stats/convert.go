package stats

import (
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/stats"
)

func u64(v uint64) *runtimeapi.UInt64Value { return &runtimeapi.UInt64Value{Value: v} }

// Every usage block carries a timestamp > 0 and all its values, zero ones
// included: kubelet dereferences some of them without a nil check.

func cpuUsage(at time.Time, usage, nanoCores uint64, psi *stats.PSI) *runtimeapi.CpuUsage {
	return &runtimeapi.CpuUsage{
		Timestamp:            at.UnixNano(),
		UsageCoreNanoSeconds: u64(usage),
		UsageNanoCores:       u64(nanoCores),
		Psi:                  psiStats(psi),
	}
}

func memoryUsage(at time.Time, m *stats.Memory, psi *stats.PSI) *runtimeapi.MemoryUsage {
	if m == nil {
		m = &stats.Memory{}
	}
	return &runtimeapi.MemoryUsage{
		Timestamp:       at.UnixNano(),
		WorkingSetBytes: u64(m.WorkingSet),
		AvailableBytes:  u64(m.Available()),
		UsageBytes:      u64(m.Usage),
		RssBytes:        u64(m.RSS),
		PageFaults:      u64(m.PageFaults),
		MajorPageFaults: u64(m.MajorPageFaults),
		Psi:             psiStats(psi),
	}
}

func swapUsage(at time.Time, s *stats.Swap) *runtimeapi.SwapUsage {
	if s == nil {
		s = &stats.Swap{}
	}
	return &runtimeapi.SwapUsage{
		Timestamp:          at.UnixNano(),
		SwapAvailableBytes: u64(s.Available()),
		SwapUsageBytes:     u64(s.Usage),
	}
}

// ioUsage is only PSI in the CRI: nil without it.
func ioUsage(at time.Time, p *stats.Pressure) *runtimeapi.IoUsage {
	if p == nil || p.IO == nil {
		return nil
	}
	return &runtimeapi.IoUsage{Timestamp: at.UnixNano(), Psi: psiStats(p.IO)}
}

func psiStats(p *stats.PSI) *runtimeapi.PsiStats {
	if p == nil {
		return nil
	}
	data := func(d *stats.PSIData) *runtimeapi.PsiData {
		if d == nil {
			return nil
		}
		return &runtimeapi.PsiData{Total: d.Total, Avg10: d.Avg10, Avg60: d.Avg60, Avg300: d.Avg300}
	}
	return &runtimeapi.PsiStats{Full: data(p.Full), Some: data(p.Some)}
}

// pressure picks one resource's PSI out of p, which may be nil.
func pressure(p *stats.Pressure, pick func(*stats.Pressure) *stats.PSI) *stats.PSI {
	if p == nil {
		return nil
	}
	return pick(p)
}

func cpuPSI(p *stats.Pressure) *stats.PSI    { return p.CPU }
func memoryPSI(p *stats.Pressure) *stats.PSI { return p.Memory }

// networkUsage is nil for a pod with no interface but loopback. Otherwise
// default_interface is set, eth0 or else the first one: kubelet reads its
// fields without a nil check.
func networkUsage(n *stats.Network) *runtimeapi.NetworkUsage {
	if len(n.Interfaces) == 0 {
		return nil
	}
	def, ok := n.Default()
	if !ok {
		def = n.Interfaces[0]
	}
	out := &runtimeapi.NetworkUsage{Timestamp: n.Time.UnixNano(), DefaultInterface: interfaceUsage(def)}
	for _, i := range n.Interfaces {
		// "Stats for all found network interfaces, excluding the default."
		if i.Name != def.Name {
			out.Interfaces = append(out.Interfaces, interfaceUsage(i))
		}
	}
	return out
}

func interfaceUsage(i stats.Interface) *runtimeapi.NetworkInterfaceUsage {
	return &runtimeapi.NetworkInterfaceUsage{
		Name:     i.Name,
		RxBytes:  u64(i.RxBytes),
		RxErrors: u64(i.RxErrors),
		TxBytes:  u64(i.TxBytes),
		TxErrors: u64(i.TxErrors),
	}
}

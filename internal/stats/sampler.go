package stats

import (
	"sync"
	"time"
)

// Sampler turns cumulative CPU usage into a rate: it keeps the last
// (time, usage) of each id and reports the average over the time since.
//
// Every call moves the window, whoever the caller is (kubelet every 10s,
// crictl stats in between): each answer is still a true average over its
// own window. This is what containerd does.
type Sampler struct {
	mu   sync.Mutex
	last map[string]cpuSample // mu guards last
}

type cpuSample struct {
	at    time.Time
	usage uint64
}

// NewSampler returns an empty sampler.
func NewSampler() *Sampler {
	return &Sampler{last: map[string]cpuSample{}}
}

// NanoCores records usage (cumulative ns of CPU) at time at for id and
// returns the CPU used per second since id's previous sample, in
// nanoseconds per second (1e9 = one core busy).
//
// The first sample of an id returns 0, as containerd does: kubelet shows a
// container's first usage_nano_cores as zero either way. A window that is
// empty or goes backwards, or a counter that went down (the cgroup was
// recreated), also returns 0 and starts over.
func (s *Sampler) NanoCores(id string, at time.Time, usage uint64) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, ok := s.last[id]
	if ok && !at.After(prev.at) {
		return 0 // a concurrent caller recorded a later sample; keep it
	}
	s.last[id] = cpuSample{at: at, usage: usage}
	if !ok || usage < prev.usage {
		return 0
	}
	window := at.Sub(prev.at)
	return uint64(float64(usage-prev.usage) / window.Seconds())
}

// Retain drops the samples of every id not in keep: called after a full
// (unfiltered) list, so removed containers do not stay in memory.
func (s *Sampler) Retain(keep map[string]struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.last {
		if _, ok := keep[id]; !ok {
			delete(s.last, id)
		}
	}
}

// Forget drops id's sample.
func (s *Sampler) Forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.last, id)
}

// Len is the number of ids with a sample.
func (s *Sampler) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.last)
}

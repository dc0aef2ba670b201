package stats

import (
	"errors"
	"testing"
	"time"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"

	"github.com/berth-cri/berth/internal/snapshot"
)

func TestSamplerNanoCores(t *testing.T) {
	t0 := time.Unix(1000, 0)
	type step struct {
		at    time.Duration
		usage uint64
		want  uint64
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"first sample is zero", []step{{0, 5e9, 0}}},
		{"one core", []step{{0, 0, 0}, {time.Second, 1e9, 1e9}}},
		{"half a core over two seconds", []step{{0, 1e9, 0}, {2 * time.Second, 2e9, 5e8}}},
		{"window moves on every sample", []step{{0, 0, 0}, {time.Second, 1e9, 1e9}, {2 * time.Second, 1.25e9, 2.5e8}}},
		{"same time is zero and keeps the sample", []step{{0, 0, 0}, {0, 1e9, 0}, {time.Second, 2e9, 2e9}}},
		{"older sample is ignored", []step{{0, 0, 0}, {2 * time.Second, 2e9, 1e9}, {time.Second, 1e9, 0}, {3 * time.Second, 3e9, 1e9}}},
		{"counter reset starts over", []step{{0, 5e9, 0}, {time.Second, 1e9, 0}, {2 * time.Second, 2e9, 1e9}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSampler()
			for i, st := range tc.steps {
				if got := s.NanoCores("c", t0.Add(st.at), st.usage); got != st.want {
					t.Errorf("step %d: %d nano cores, want %d", i, got, st.want)
				}
			}
		})
	}
}

func TestSamplerRetainForget(t *testing.T) {
	s := NewSampler()
	for _, id := range []string{"a", "b", "c"} {
		s.NanoCores(id, time.Unix(1, 0), 1)
	}
	s.Retain(map[string]struct{}{"a": {}, "b": {}})
	s.Forget("b")
	if s.Len() != 1 {
		t.Fatalf("%d samples left, want only a", s.Len())
	}
	// a kept its sample: its next call has a rate, c starts over.
	if got := s.NanoCores("a", time.Unix(2, 0), 1e9+1); got != 1e9 {
		t.Errorf("a: %d, want 1e9", got)
	}
	if got := s.NanoCores("c", time.Unix(2, 0), 1e9+1); got != 0 {
		t.Errorf("c: %d, want 0 after Retain dropped it", got)
	}
}

func TestLayerCache(t *testing.T) {
	calls := 0
	fail := false
	c := NewLayerCache(func(key string) (snapshot.Usage, error) {
		calls++
		if fail {
			return snapshot.Usage{}, errors.New("boom")
		}
		return snapshot.Usage{Bytes: int64(calls), Inodes: 1}, nil
	}, time.Hour)
	u1, at1, err := c.Get("k")
	if err != nil || u1.Bytes != 1 || at1.IsZero() {
		t.Fatalf("first get: %+v %v %v", u1, at1, err)
	}
	u2, at2, _ := c.Get("k")
	if u2 != u1 || at2 != at1 || calls != 1 {
		t.Fatalf("second get measured again: %+v, %d calls", u2, calls)
	}
	c.Retain(nil)
	fail = true
	if _, _, err := c.Get("k"); err == nil {
		t.Fatal("error not returned after Retain dropped the entry")
	}
	fail = false
	if u, _, _ := c.Get("k"); u.Bytes != 3 {
		t.Fatalf("errors must not be cached: %+v", u)
	}
}

func TestFromV1(t *testing.T) {
	now := time.Unix(5, 0)
	const gib = 1 << 30
	for _, tc := range []struct {
		name     string
		in       *v1stats.Metrics
		wantMem  *Memory
		wantSwap *Swap
	}{
		{
			name: "unlimited, no swap accounting",
			in: &v1stats.Metrics{Memory: &v1stats.MemoryStat{
				Usage: &v1stats.MemoryEntry{Usage: 100, Limit: 9223372036854771712},
				Swap:  &v1stats.MemoryEntry{}, TotalInactiveFile: 30, TotalRSS: 50, TotalPgFault: 7, TotalPgMajFault: 1,
			}},
			wantMem: &Memory{Usage: 100, WorkingSet: 70, RSS: 50, PageFaults: 7, MajorPageFaults: 1},
		},
		{
			name: "limited with swap",
			in: &v1stats.Metrics{Memory: &v1stats.MemoryStat{
				Usage:             &v1stats.MemoryEntry{Usage: gib / 2, Limit: gib},
				Swap:              &v1stats.MemoryEntry{Usage: gib/2 + 10, Limit: 2 * gib},
				TotalInactiveFile: gib,
			}},
			wantMem:  &Memory{Usage: gib / 2, WorkingSet: 0, Limit: gib},
			wantSwap: &Swap{Usage: 10, Limit: gib},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fromV1(now, tc.in)
			if *c.Memory != *tc.wantMem {
				t.Errorf("memory = %+v, want %+v", *c.Memory, *tc.wantMem)
			}
			if (c.Swap == nil) != (tc.wantSwap == nil) || c.Swap != nil && *c.Swap != *tc.wantSwap {
				t.Errorf("swap = %+v, want %+v", c.Swap, tc.wantSwap)
			}
		})
	}
}

func TestFromV2(t *testing.T) {
	psi := &v2stats.PSIStats{Some: &v2stats.PSIData{Total: 3, Avg10: 1.5}}
	c := fromV2(time.Unix(5, 0), &v2stats.Metrics{
		CPU:  &v2stats.CPUStat{UsageUsec: 2, PSI: psi},
		Pids: &v2stats.PidsStat{Current: 4, Limit: ^uint64(0)},
		Memory: &v2stats.MemoryStat{
			Usage: 100, UsageLimit: ^uint64(0), InactiveFile: 40, Anon: 60, Pgfault: 9, Pgmajfault: 2,
			SwapUsage: 5, SwapLimit: 50, PSI: psi,
		},
		Io: &v2stats.IOStat{PSI: psi},
	})
	if c.CPUUsageNanos != 2000 || *c.Pids != 4 {
		t.Errorf("cpu %d pids %d", c.CPUUsageNanos, *c.Pids)
	}
	if want := (Memory{Usage: 100, WorkingSet: 60, RSS: 60, PageFaults: 9, MajorPageFaults: 2}); *c.Memory != want {
		t.Errorf("memory = %+v, want %+v", *c.Memory, want)
	}
	if *c.Swap != (Swap{Usage: 5, Limit: 50}) || c.Swap.Available() != 45 {
		t.Errorf("swap = %+v", *c.Swap)
	}
	for _, p := range []*PSI{c.PSI.CPU, c.PSI.Memory, c.PSI.IO} {
		if p == nil || p.Some.Total != 3000 || p.Some.Avg10 != 1.5 || p.Full != nil {
			t.Errorf("psi = %+v", p)
		}
	}
	bare := fromV2(time.Unix(5, 0), &v2stats.Metrics{CPU: &v2stats.CPUStat{}, Memory: &v2stats.MemoryStat{}, Pids: &v2stats.PidsStat{}})
	if bare.Memory != nil || bare.Swap != nil || bare.Pids != nil || bare.PSI != nil {
		t.Errorf("controllers off must read as absent: %+v", bare)
	}
}

package stats

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-cri/berth/internal/errdefs"
)

// v2Files are the files of a container cgroup on a v2 host with PSI and
// swap accounting, as kernel 6.1 writes them (trimmed to what is read).
var v2Files = map[string]string{
	"cgroup.controllers":  "cpu io memory pids\n",
	"cpu.stat":            "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
	"cpu.pressure":        "some avg10=1.50 avg60=0.75 avg300=0.10 total=1234\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=56\n",
	"memory.current":      "10485760\n",
	"memory.max":          "33554432\n",
	"memory.stat":         "anon 8388608\nfile 2097152\ninactive_file 1048576\npgfault 700\npgmajfault 3\n",
	"memory.swap.current": "4096\n",
	"memory.swap.max":     "max\n",
	"memory.pressure":     "some avg10=10.00 avg60=5.00 avg300=1.00 total=900000\nfull avg10=8.00 avg60=4.00 avg300=0.50 total=800000\n",
	"memory.events":       "low 0\nhigh 7\nmax 20\noom 2\noom_kill 2\noom_group_kill 1\n",
	"io.stat":             "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n253:1 rbytes=0 wbytes=512 rios=0 wios=1 dbytes=0 dios=0\n",
	"io.pressure":         "some avg10=0.00 avg60=0.00 avg300=0.00 total=10\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=5\n",
	"pids.current":        "3\n",
	"pids.max":            "max\n",
}

// without returns v2Files less the named files.
func without(names ...string) map[string]string {
	out := make(map[string]string, len(v2Files))
	for k, v := range v2Files {
		out[k] = v
	}
	for _, n := range names {
		delete(out, n)
	}
	return out
}

func writeCgroup(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestV2ReaderFiles(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		check func(*testing.T, Cgroup)
	}{
		{"everything", v2Files, func(t *testing.T, c Cgroup) {
			if c.CPUUsageNanos != 2500000000 {
				t.Errorf("cpu %d ns", c.CPUUsageNanos)
			}
			m := c.Memory
			if m == nil || m.Usage != 10485760 || m.WorkingSet != 10485760-1048576 || m.Limit != 33554432 || m.RSS != 8388608 || m.PageFaults != 700 || m.MajorPageFaults != 3 {
				t.Errorf("memory %+v", m)
			}
			// Swap accounted, unlimited.
			if c.Swap == nil || c.Swap.Usage != 4096 || c.Swap.Limit != 0 {
				t.Errorf("swap %+v", c.Swap)
			}
			if c.Pids == nil || *c.Pids != 3 {
				t.Errorf("pids %v", c.Pids)
			}
			// Totals: microseconds in the files, nanoseconds out.
			p := c.PSI
			if p == nil || p.CPU == nil || p.CPU.Some.Total != 1234000 || p.CPU.Some.Avg10 != 1.5 || p.CPU.Full.Total != 56000 {
				t.Fatalf("cpu psi %+v", p)
			}
			if p.Memory.Some.Total != 900000000 || p.Memory.Full.Total != 800000000 || p.Memory.Full.Avg60 != 4 {
				t.Errorf("memory psi some %+v full %+v", p.Memory.Some, p.Memory.Full)
			}
			if p.IO.Some.Total != 10000 || p.IO.Full.Total != 5000 {
				t.Errorf("io psi some %+v full %+v", p.IO.Some, p.IO.Full)
			}
			want := []IODevice{
				{Major: 8, Minor: 0, ReadBytes: 4096, WriteBytes: 8192, ReadOps: 1, WriteOps: 2},
				{Major: 253, Minor: 1, WriteBytes: 512, WriteOps: 1},
			}
			if len(c.IO) != 2 || c.IO[0] != want[0] || c.IO[1] != want[1] {
				t.Errorf("io %+v", c.IO)
			}
			e := c.MemoryEvents
			if e == nil || *e != (MemoryEvents{High: 7, Max: 20, OOM: 2, OOMKill: 2, OOMGroupKill: 1}) {
				t.Errorf("memory events %+v", e)
			}
		}},
		// psi=0 or a kernel without CONFIG_PSI: no pressure files.
		{"no PSI", without("cpu.pressure", "memory.pressure", "io.pressure"), func(t *testing.T, c Cgroup) {
			if c.PSI != nil {
				t.Errorf("psi %+v", c.PSI)
			}
			if c.Memory == nil || c.Swap == nil {
				t.Errorf("memory %+v swap %+v", c.Memory, c.Swap)
			}
		}},
		// Kernels before 5.13 have no "full" line for cpu.
		{"cpu PSI without full", func() map[string]string {
			f := without()
			f["cpu.pressure"] = "some avg10=0.00 avg60=0.00 avg300=0.00 total=7\n"
			return f
		}(), func(t *testing.T, c Cgroup) {
			if c.PSI.CPU.Some.Total != 7000 || c.PSI.CPU.Full != nil {
				t.Errorf("cpu psi some %+v full %+v", c.PSI.CPU.Some, c.PSI.CPU.Full)
			}
		}},
		// swapaccount=0: no memory.swap.* files.
		{"no swap accounting", without("memory.swap.current", "memory.swap.max"), func(t *testing.T, c Cgroup) {
			if c.Swap != nil {
				t.Errorf("swap %+v", c.Swap)
			}
			if c.Memory == nil {
				t.Error("memory missing")
			}
		}},
		{"swap limited", func() map[string]string {
			f := without()
			f["memory.swap.max"] = "1048576\n"
			return f
		}(), func(t *testing.T, c Cgroup) {
			if c.Swap == nil || c.Swap.Limit != 1048576 || c.Swap.Available() != 1048576-4096 {
				t.Errorf("swap %+v", c.Swap)
			}
		}},
		// A cgroup whose parent does not enable memory or io.
		{"cpu and pids only", map[string]string{"cpu.stat": v2Files["cpu.stat"], "pids.current": "1\n", "pids.max": "10\n"}, func(t *testing.T, c Cgroup) {
			if c.Memory != nil || c.Swap != nil || c.MemoryEvents != nil || len(c.IO) != 0 || c.PSI != nil {
				t.Errorf("%+v", c)
			}
			if c.Pids == nil || *c.Pids != 1 || c.CPUUsageNanos != 2500000000 {
				t.Errorf("pids %v cpu %d", c.Pids, c.CPUUsageNanos)
			}
		}},
		{"no io yet", without("io.stat"), func(t *testing.T, c Cgroup) {
			if len(c.IO) != 0 || c.PSI.IO == nil {
				t.Errorf("io %+v psi %+v", c.IO, c.PSI.IO)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mnt := t.TempDir()
			writeCgroup(t, filepath.Join(mnt, "kubepods/pod1/c1"), tt.files)
			c, err := NewV2Reader(mnt).Read("/kubepods/pod1/c1")
			if err != nil {
				t.Fatal(err)
			}
			if c.Time.IsZero() {
				t.Error("no time")
			}
			tt.check(t, c)
		})
	}
}

func TestV2ReaderGone(t *testing.T) {
	_, err := NewV2Reader(t.TempDir()).Read("/kubepods/pod1/c1")
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

func TestBlockDevice(t *testing.T) {
	sys := t.TempDir()
	writeCgroup(t, filepath.Join(sys, "dev/block/8:0"), map[string]string{"uevent": "MAJOR=8\nMINOR=0\nDEVNAME=sda\nDEVTYPE=disk\n"})
	writeCgroup(t, filepath.Join(sys, "dev/block/8:1"), map[string]string{"uevent": "MAJOR=8\nMINOR=1\nDEVTYPE=partition\n"})
	for _, tt := range []struct {
		major, minor uint64
		want         string
	}{{8, 0, "/dev/sda"}, {8, 1, "8:1"}, {253, 7, "253:7"}} {
		if got := blockDevice(sys, tt.major, tt.minor); got != tt.want {
			t.Errorf("blockDevice(%d, %d) = %q, want %q", tt.major, tt.minor, got, tt.want)
		}
	}
}

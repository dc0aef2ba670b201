package procfs

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestReadSelf(t *testing.T) {
	u, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.RSSKiB <= 0 || u.PSSKiB <= 0 || u.ReadBytes <= 0 || u.Procs != 1 {
		t.Errorf("Read(self) = %+v, want positive RSS, PSS, rchar", u)
	}
}

func TestSumSkipsGoneProcesses(t *testing.T) {
	// pid_max is at most 2^22: this pid cannot exist.
	u, err := Sum([]int{os.Getpid(), 1 << 23})
	if err != nil {
		t.Fatal(err)
	}
	if u.Procs != 1 {
		t.Errorf("Sum counted %d processes, want 1", u.Procs)
	}
}

func TestCPUTime(t *testing.T) {
	tests := []struct {
		name string
		stat string
		want time.Duration
	}{
		// utime 150, stime 50, cutime 7, cstime 3 ticks.
		{"plain", "42 (berthd) S 1 42 42 0 -1 4194560 100 0 0 0 150 50 7 3 20 0 8 0 1 1 1", 2100 * time.Millisecond},
		{"comm with spaces and parens", "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 1 0 0 20 0 8 0 1 1 1", 20 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "stat")
			if err := os.WriteFile(p, []byte(tt.stat), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := cpuTime(p)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("cpuTime = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFindByCmdline(t *testing.T) {
	// Our own process is excluded by design; pid 1 always exists.
	pids, err := FindByCmdline("no process has this in its command line, 7f3a")
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) != 0 {
		t.Errorf("found %v", pids)
	}
}

// The tracker counts growth from the first sample, all of a process born
// later, and keeps what a process that went away had spent.
func TestCPUTracker(t *testing.T) {
	var c CPUTracker
	s := time.Second
	c.Observe(map[int]time.Duration{1: 10 * s, 2: 5 * s})
	c.Observe(map[int]time.Duration{1: 12 * s, 2: 6 * s, 3: 1 * s}) // 3 is new: its 1 s counts
	c.Observe(map[int]time.Duration{1: 13 * s, 3: 3 * s})           // 2 is gone: its 1 s stays
	if got, want := c.Total(), (3+1+3)*s; got != want {
		t.Errorf("Total() = %v, want %v", got, want)
	}
	var empty CPUTracker
	if empty.Total() != 0 {
		t.Errorf("empty tracker: %v", empty.Total())
	}
}

func TestRunningTasks(t *testing.T) {
	n, err := RunningTasks()
	if err != nil || n < 1 { // the reading task itself runs
		t.Fatalf("RunningTasks() = %d, %v", n, err)
	}
	if _, err := runningTasks("/proc/self/status"); err == nil {
		t.Fatal("a file without procs_running was read")
	}
}

func TestWithDescendants(t *testing.T) {
	// pid -> ppid of a fake /proc: 10 and 20 are roots; 11, 12 under 10, 13
	// under 11; 21 under 20; 30 and 31 belong to neither.
	procs := map[int]int{1: 0, 10: 1, 11: 10, 12: 10, 13: 11, 20: 1, 21: 20, 30: 1, 31: 30}
	proc := t.TempDir()
	for pid, ppid := range procs {
		dir := filepath.Join(proc, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		stat := fmt.Sprintf("%d (a (b) c) S %d %d 0 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0", pid, ppid, pid)
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(proc, "uptime"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		roots, want []int
	}{
		{[]int{10, 20}, []int{10, 11, 12, 13, 20, 21}},
		{[]int{11}, []int{11, 13}},
		{[]int{10, 11}, []int{10, 11, 12, 13}}, // a root under another counts once
		{[]int{99}, []int{99}},                 // a root gone is still returned; Sum skips it
	}
	for _, tt := range tests {
		got, err := withDescendants(proc, tt.roots)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("withDescendants(%v) = %v, want %v", tt.roots, got, tt.want)
		}
	}
}

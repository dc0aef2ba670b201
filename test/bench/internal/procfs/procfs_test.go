package procfs

import (
	"os"
	"path/filepath"
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

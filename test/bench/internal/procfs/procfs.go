// Package procfs reads what the benchmark measures about runtime processes
// from /proc: resident memory, CPU time and bytes read.
package procfs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat. It is part of the
// kernel's user-space ABI (USER_HZ), 100 on every Linux architecture Go runs on.
const userHZ = 100

// Usage is what a set of processes holds or has used.
type Usage struct {
	RSSKiB int64 // resident set size
	PSSKiB int64 // proportional set size: shared pages split among their users
	// CPU is user+system time, including that of children the processes
	// waited for (a shim reaps the runc and exec'd processes it starts).
	CPU time.Duration
	// ReadBytes is rchar: bytes read through read(2) and friends, sockets
	// included, so it counts what a daemon downloads.
	ReadBytes int64
	Procs     int
}

// Sum reads the usage of each pid and adds them up. A process that went
// away meanwhile is skipped; any other read error is returned.
func Sum(pids []int) (Usage, error) {
	var u Usage
	for _, pid := range pids {
		p, err := Read(pid)
		if err != nil {
			if os.IsNotExist(err) || strings.Contains(err.Error(), "no such process") {
				continue
			}
			return u, err
		}
		u.RSSKiB += p.RSSKiB
		u.PSSKiB += p.PSSKiB
		u.CPU += p.CPU
		u.ReadBytes += p.ReadBytes
		u.Procs++
	}
	return u, nil
}

// Read returns the usage of one process.
func Read(pid int) (Usage, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	var u Usage
	status, err := fields(filepath.Join(dir, "status"))
	if err != nil {
		return u, err
	}
	rollup, err := fields(filepath.Join(dir, "smaps_rollup"))
	if err != nil {
		return u, err
	}
	io, err := fields(filepath.Join(dir, "io"))
	if err != nil {
		return u, err
	}
	cpu, err := cpuTime(filepath.Join(dir, "stat"))
	if err != nil {
		return u, err
	}
	u.RSSKiB = status["VmRSS"]
	u.PSSKiB = rollup["Pss"]
	u.ReadBytes = io["rchar"]
	u.CPU = cpu
	u.Procs = 1
	return u, nil
}

// fields parses "Key: value [kB]" lines into key -> first number.
func fields(path string) (map[string]int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			m[k] = n
		}
	}
	return m, nil
}

// statFields reads /proc/<pid>/stat from field 3 (state) on, at least
// want of them.
func statFields(path string, want int) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// The command name (field 2) may hold spaces and parentheses: fields
	// are counted after its last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("%s: malformed", path)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < want {
		return nil, fmt.Errorf("%s: %d fields", path, len(f))
	}
	return f, nil
}

// cpuTime is utime+stime+cutime+cstime of /proc/<pid>/stat.
func cpuTime(path string) (time.Duration, error) {
	// f[0] is field 3 (state); utime..cstime are fields 14..17.
	f, err := statFields(path, 15)
	if err != nil {
		return 0, err
	}
	var ticks int64
	for _, s := range f[11:15] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// FindByCmdline returns the pids, other than our own, whose command line
// (arguments joined by spaces) contains every one of the substrings.
func FindByCmdline(substrings ...string) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue // gone, or a kernel thread
		}
		cmd := string(bytes.ReplaceAll(bytes.TrimRight(b, "\x00"), []byte{0}, []byte{' '}))
		if containsAll(cmd, substrings) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// Comm is the process's name (/proc/<pid>/comm), "" if it is gone.
func Comm(pid int) string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	return strings.TrimSpace(string(b))
}

// CPUTracker adds up the CPU time a changing set of processes spends: each
// pid's growth since it was first seen (from zero for one that appeared
// after the start), kept after the process is gone. A containerd shim
// that exits at a pod's teardown is reaped by no process of the runtime,
// so its time would otherwise be lost; sampled often, a tracker loses
// only what a process spent after its last sample.
type CPUTracker struct {
	base, last map[int]time.Duration
	started    bool
}

// Observe records a sample: pid -> its CPU time (Usage.CPU) now.
func (c *CPUTracker) Observe(cpu map[int]time.Duration) {
	if c.base == nil {
		c.base, c.last = map[int]time.Duration{}, map[int]time.Duration{}
	}
	for pid, v := range cpu {
		if _, seen := c.last[pid]; !seen {
			// Present at the first sample: only its growth from now counts.
			// New later: all of it was spent meanwhile.
			if !c.started {
				c.base[pid] = v
			}
		}
		if v >= c.last[pid] {
			c.last[pid] = v
		}
	}
	c.started = true
}

// Total is the CPU time spent since the first sample.
func (c *CPUTracker) Total() time.Duration {
	var t time.Duration
	for pid, v := range c.last {
		t += v - c.base[pid]
	}
	return t
}

// CPUOf reads each pid's CPU time (with its reaped children); pids gone
// meanwhile are left out.
func CPUOf(pids []int) map[int]time.Duration {
	m := make(map[int]time.Duration, len(pids))
	for _, pid := range pids {
		if v, err := cpuTime(filepath.Join("/proc", strconv.Itoa(pid), "stat")); err == nil {
			m[pid] = v
		}
	}
	return m
}

// WithDescendants returns roots followed by every live descendant of
// theirs (children, their children...), each once. A runtime's container
// processes began as its inits (runc init, libcontainer's): their CPU
// before the exec of the command stays theirs, uncounted by their parent
// until it reaps them, so a pod start's CPU is the whole tree's.
func WithDescendants(roots []int) ([]int, error) {
	return withDescendants("/proc", roots)
}

func withDescendants(proc string, roots []int) ([]int, error) {
	ents, err := os.ReadDir(proc)
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, err := parentOf(filepath.Join(proc, e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		children[ppid] = append(children[ppid], pid)
	}
	seen := map[int]bool{}
	var out []int
	queue := slices.Clone(roots)
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		out = append(out, pid)
		queue = append(queue, children[pid]...)
	}
	return out, nil
}

// parentOf is the ppid of /proc/<pid>/stat (field 4).
func parentOf(path string) (int, error) {
	f, err := statFields(path, 2)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(f[1])
}

// RunningTasks is the number of tasks runnable on the machine now
// (procs_running of /proc/stat, the reading included).
func RunningTasks() (int, error) {
	return runningTasks("/proc/stat")
}

func runningTasks(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "procs_running "); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("%s: no procs_running", path)
}

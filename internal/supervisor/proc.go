package supervisor

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/keeper"
)

// startTime: a pid plus its start time names one process, even after the
// pid is reused (the keeper names its exit records so).
var startTime = keeper.StartTime

// openPidfd opens a non-blocking pidfd for pid if it still is the process
// that started at start, nil (no error) if that process is gone. A pidfd taken
// after the start-time check still refers to the checked process unless the
// pid was recycled in between, which a second check rules out.
func openPidfd(pid int, start uint64) (*os.File, error) {
	if st, err := startTime(pid); err != nil || st != start {
		return nil, nil
	}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.ESRCH) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	if st, err := startTime(pid); err != nil || st != start {
		unix.Close(fd)
		return nil, nil
	}
	return os.NewFile(uintptr(fd), "pidfd"), nil
}

// oomKills reads how many OOM kills a memory cgroup has counted: v1's
// memory.oom_control (oom_kill), v2's memory.events (oom_kill, plus
// oom_group_kill, the kills of memory.oom.group, which kubelet turns on for
// every container). On v2 the counters are hierarchical: a kill by a pod
// or node limit is counted in the victim's own cgroup too. 0 when unknown
// (no file: a kernel before 4.13, or the cgroup already gone).
func oomKills(dir string) uint64 {
	if dir == "" {
		return 0
	}
	for _, name := range []string{"memory.events", "memory.oom_control"} {
		data, err := os.ReadFile(dir + "/" + name)
		if err == nil {
			return parseOOMKills(data)
		}
	}
	return 0
}

// parseOOMKills sums the kill counters of a memory.events or
// memory.oom_control file ("key value" lines).
func parseOOMKills(data []byte) uint64 {
	var n uint64
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && (k == "oom_kill" || k == "oom_group_kill") {
			c, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err == nil {
				n += c
			}
		}
	}
	return n
}

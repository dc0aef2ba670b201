package supervisor

import (
	"bytes"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// orphanGrace is how long a zombie child nobody claims must stay a zombie
// before the reaper takes it. Every child the supervisor starts has a
// waiter that reaps it at once (a container's exit watcher, an exec's
// connection, libcontainer for its own helper processes); a zombie that
// outlives this grace has none.
const orphanGrace = 3 * time.Second

// reapOrphans waits for processes reparented to the supervisor. It is a
// child subreaper (for oci-kind inits), so in a container sharing the host's
// PID namespace whatever an exited init or exec'd command left behind comes
// here when it ends; without this it would stay a zombie for ever. It never
// reaps a container init or a running exec (their statuses are reported),
// and only zombies: a live orphan is left to run. It returns when stop is
// closed.
func (s *Server) reapOrphans(stop <-chan struct{}) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGCHLD)
	defer signal.Stop(sigs)
	seen := map[int]time.Time{} // unclaimed zombies: when first seen
	var scan <-chan time.Time
	for {
		select {
		case <-stop:
			return
		case <-sigs:
			// Every exec and create ends children of ours; scan at most
			// once per grace, which is as soon as an orphan may be reaped.
			if scan == nil {
				scan = time.After(orphanGrace)
			}
			continue
		case <-scan:
		}
		now := time.Now()
		still := map[int]time.Time{}
		for _, pid := range childPids() {
			if s.claimed(pid) || !isZombie(pid) {
				continue
			}
			first, ok := seen[pid]
			if !ok {
				first = now
			}
			if now.Sub(first) < orphanGrace {
				still[pid] = first
				continue
			}
			var ws unix.WaitStatus
			if wpid, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err == nil && wpid == pid {
				s.log.WithField("pid", pid).Debug("reaped an orphan")
			}
		}
		seen, scan = still, nil
		if len(seen) > 0 {
			scan = time.After(orphanGrace)
		}
	}
}

// claimed: pid is a container init or a running exec, whose waiter reaps it.
func (s *Server) claimed(pid int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.execs[pid]; ok {
		return true
	}
	for _, c := range s.containers {
		c.mu.Lock()
		p := c.rec.Pid
		c.mu.Unlock()
		if p == pid {
			return true
		}
	}
	return false
}

func (s *Server) trackExec(pid int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.execs == nil {
		s.execs = map[int]struct{}{}
	}
	s.execs[pid] = struct{}{}
}

func (s *Server) untrackExec(pid int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.execs, pid)
}

// childPids lists this process's children (of every thread).
func childPids() []int {
	tasks, _ := os.ReadDir("/proc/self/task")
	var pids []int
	for _, t := range tasks {
		data, err := os.ReadFile("/proc/self/task/" + t.Name() + "/children")
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// isZombie reads the state field of /proc/<pid>/stat.
func isZombie(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(data, ')')
	return i >= 0 && i+2 < len(data) && data[i+2] == 'Z'
}

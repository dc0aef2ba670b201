package supervisor

import (
	"errors"
	"os"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/atomicfile"
	"github.com/berth-cri/berth/internal/keeper"
	"github.com/berth-cri/berth/internal/logctx"
)

// logDrainTimeout bounds how long an exit waits for the container's output
// to reach EOF before being published: a daemonised grandchild may keep the
// pipes open for ever, and the exit must not wait for it.
const logDrainTimeout = 2 * time.Second

// watch waits for the init behind c.pidfd to end, records the exit and
// publishes it. It returns early, recording nothing, when the watch is
// detached (upgrade) through a read deadline on the pidfd.
func (s *Server) watch(c *container, pidfd *os.File, done chan struct{}) {
	defer close(done)
	var (
		status unix.WaitStatus
		exact  bool
		err    error
	)
	// The count at the kill, for a systemd scope gone before the exit is
	// handled (oomwatch.go).
	c.mu.Lock()
	ow := watchOOM(c.rec.MemoryCgroup, c.rec.Pid, s.kmsg)
	c.mu.Unlock()
	defer ow.stop()
	if pidfd != nil { // nil: the init was already gone when adopted
		status, exact, err = waitExit(pidfd, c.rec.Pid)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
	}
	finished := time.Now()
	if !exact && err == nil {
		// Not our child: a supervisor before us started it, and the keeper
		// above us both reaped it and recorded how it ended.
		c.mu.Lock()
		pid, start := c.rec.Pid, c.rec.PidStartTime
		c.mu.Unlock()
		if ks, at, kerr := s.keeperExit(pid, start); kerr == nil {
			status, exact, finished = ks, true, at
			defer keeper.RemoveExit(s.exits, pid, start)
		} else {
			s.log.WithError(kerr).WithFields(logrus.Fields{logctx.ContainerField: c.rec.ID, "pid": pid}).Warn("nobody recorded the exit of a re-adopted container; reporting an unknown exit")
		}
	}
	// Read the OOM counters now, before the output drains (up to
	// logDrainTimeout): a systemd scope's cgroup, and its memory.events
	// with it, is removed soon after its last process is gone.
	c.mu.Lock()
	memcg, ioDone := c.rec.MemoryCgroup, c.ioDone
	c.mu.Unlock()
	var ooms uint64
	if exact && err == nil {
		ooms = max(ow.stop(), oomKills(memcg))
	}
	if err != nil {
		s.log.WithError(err).WithField(logctx.ContainerField, c.rec.ID).Error("waiting for container init failed; reporting an unknown exit")
	}
	if ioDone != nil {
		select {
		case <-ioDone:
		case <-time.After(logDrainTimeout):
		}
	}
	var e v1.ExitStatus
	if exact && err == nil {
		e = exitFromStatus(status, finished, ooms)
	} else {
		e = unknownExit(finished)
	}
	s.recordExit(c, e)
}

// waitExit parks on the poller until the pidfd is readable (the process
// ended), then reaps it. exact is false when the process was not our child
// (adopted after a restart): its status went to its new parent.
func waitExit(pidfd *os.File, pid int) (ws unix.WaitStatus, exact bool, err error) {
	rc, err := pidfd.SyscallConn()
	if err != nil {
		return 0, false, err
	}
	var werr error
	var wpid int
	err = rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, perr := unix.Poll(fds, 0); perr == nil && n == 0 {
			return false // still running: wait for readiness
		}
		for {
			wpid, werr = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
			if !errors.Is(werr, unix.EINTR) {
				break
			}
		}
		return true
	})
	if err != nil {
		return 0, false, err
	}
	// The pidfd says the process ended, but its zombie may not be ours to
	// reap yet (an oci runtime's init is reparented to us, the subreaper,
	// as its runtime parent goes): WNOHANG then returns pid 0 and an empty
	// status, which must not pass for "exited 0". Wait for it for real; it
	// is a dead process, so this returns at once or with ECHILD.
	for werr == nil && wpid == 0 {
		wpid, werr = unix.Wait4(pid, &ws, 0, nil)
		if errors.Is(werr, unix.EINTR) {
			werr, wpid = nil, 0
		}
	}
	if errors.Is(werr, unix.ECHILD) {
		return 0, false, nil
	}
	if werr != nil {
		return 0, false, werr
	}
	return ws, true, nil
}

// keeperWaitLimit bounds the wait for the keeper's record of a process it
// is about to reap (it writes the record, then reaps, at once).
const keeperWaitLimit = 30 * time.Second

// keeperExit returns the exit the keeper recorded for the process pid
// that started at start, once the process has ended. The keeper records
// an exit before it reaps the process, so a process gone from /proc
// without a record was reaped by someone else, and one whose parent is
// not our keeper (init: the keeper was killed) never gets a record: an
// error wrapping keeper.ErrNoExit then, at once.
func (s *Server) keeperExit(pid int, start uint64) (unix.WaitStatus, time.Time, error) {
	ours := 0 // our keeper's pid
	if s.keeper != nil {
		ours = os.Getppid()
	}
	deadline := time.Now().Add(keeperWaitLimit)
	for {
		ws, at, err := keeper.ReadExit(s.exits, pid, start)
		if !errors.Is(err, keeper.ErrNoExit) {
			return ws, at, err
		}
		ppid, st, serr := keeper.Stat(pid)
		if serr != nil || st != start || ppid != ours {
			// Gone (the record, if any, was written before) or not our
			// keeper's to record.
			return keeper.ReadExit(s.exits, pid, start)
		}
		if time.Now().After(deadline) {
			return 0, time.Time{}, err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exitFromStatus applies containerd's conventions: a signal death is
// 128+signo; a SIGKILL while the cgroup counted an OOM kill is OOMKilled.
// The count need not name the init: the kernel picks the largest process,
// which may be a child that then dies alone while the init, its memory
// still short, is SIGKILLed by a later kill (or by the group kill); the
// init's own SIGKILL with any kill counted is what kubelet calls
// OOMKilled. A container whose child alone was killed and whose init went
// on to exit by itself is not OOMKilled.
func exitFromStatus(ws unix.WaitStatus, finished time.Time, ooms uint64) v1.ExitStatus {
	e := v1.ExitStatus{FinishedAt: finished.UnixNano()}
	switch {
	case ws.Signaled():
		e.Signal = int(ws.Signal())
		e.ExitCode = 128 + int32(ws.Signal())
		if ws.Signal() == unix.SIGKILL && ooms > 0 {
			e.OOMKilled = true
		}
	default:
		e.ExitCode = int32(ws.ExitStatus())
	}
	switch {
	case e.OOMKilled:
		e.Reason = v1.ReasonOOMKilled
	case e.ExitCode == 0:
		e.Reason = v1.ReasonCompleted
	default:
		e.Reason = v1.ReasonError
	}
	return e
}

// unknownExit is the honest report of an exit nobody could observe: never 0,
// which kubelet would read as success.
func unknownExit(noticed time.Time) v1.ExitStatus {
	return v1.ExitStatus{ExitCode: 255, FinishedAt: noticed.UnixNano(), Reason: v1.ReasonUnknown}
}

// recordExit persists e, then publishes it: nobody can learn of an exit
// that a crash right after would forget. If persisting fails the exit is
// still published (berthd must not wait for ever) and the error logged; a
// restart would then report the exit as unknown, which stays honest.
func (s *Server) recordExit(c *container, e v1.ExitStatus) {
	if err := atomicfile.WriteJSONVolatile(c.path("exit.json"), e, 0o600); err != nil {
		s.log.WithError(err).WithField(logctx.ContainerField, c.rec.ID).Error("persisting exit failed")
	}
	c.mu.Lock()
	if c.exit == nil {
		c.exit = &e
		close(c.exited)
	}
	c.mu.Unlock()
	s.log.WithFields(logrus.Fields{logctx.ContainerField: c.rec.ID, "code": e.ExitCode, "reason": e.Reason}).Info("container exited")
}

package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/atomicfile"
	"github.com/berth-cri/berth/internal/keeper"
	"github.com/berth-cri/berth/internal/logctx"
)

// Upgrade re-executes the binary at the same path in the same process, so
// containers stay our children and nothing they hold changes. What crosses
// the execve:
//   - the listening socket and the lock, by descriptor (CLOEXEC cleared,
//     numbers in upgrade.json): clients never see the socket missing, and no
//     second supervisor can slip in;
//   - the container table, through the container directories on disk (the
//     same path a restart takes, so both stay tested);
//   - container output, through the named FIFOs: readers stop at a read
//     deadline and flush a pending partial line as a P record; unread bytes
//     stay in the FIFO for the new process;
//   - the hold channel to the keeper above us, if any, by descriptor (its
//     number in keeper.FDEnv, as the keeper first gave it);
//   - terminal containers' pty masters, by descriptor (CLOEXEC cleared,
//     numbers in upgrade.json by container id): a master has no path to
//     reopen, and closing it would hang the terminal up. Their readers stop
//     the same way; unread output waits in the pty.
// Exits that happen meanwhile stay unreaped zombies until the new process
// waits for them, so their status is exact.

// UpgradeEnv marks a process started by an upgrade (the supervisor's
// main tells the keeper's start from it).
const UpgradeEnv = "BERTH_SUPERVISOR_UPGRADE"

type handover struct {
	ListenFD int    `json:"listen_fd"`
	LockFD   int    `json:"lock_fd"`
	FromBoot string `json:"from_boot"`
	// Consoles are the pty masters of terminal containers, by id.
	Consoles map[string]int `json:"consoles,omitempty"`
}

func (s *Server) handoverPath() string { return filepath.Join(s.dir, "upgrade.json") }

// takeOver adopts the socket and lock of the process this one replaced, if
// this start is an upgrade. A stale upgrade.json without the environment
// mark (a crash right after writing it) is ignored.
func (s *Server) takeOver() (bool, error) {
	path := s.handoverPath()
	if os.Getenv(UpgradeEnv) == "" {
		os.Remove(path)
		return false, nil
	}
	os.Unsetenv(UpgradeEnv)
	data, err := os.ReadFile(path)
	os.Remove(path)
	if err != nil {
		return false, fmt.Errorf("read upgrade hand-over: %w", err)
	}
	var h handover
	if err := json.Unmarshal(data, &h); err != nil {
		return false, fmt.Errorf("decode upgrade hand-over: %w", err)
	}
	unix.CloseOnExec(h.LockFD)
	s.lock = os.NewFile(uintptr(h.LockFD), "supervisor.lock")
	lf := os.NewFile(uintptr(h.ListenFD), "supervisor.sock")
	ln, err := net.FileListener(lf) // dups the descriptor
	lf.Close()
	if err != nil {
		return false, fmt.Errorf("inherit listener: %w", err)
	}
	ul, ok := ln.(*net.UnixListener)
	if !ok {
		return false, fmt.Errorf("inherited listener is %T", ln)
	}
	ul.SetUnlinkOnClose(false)
	s.ln = ul
	for id, fd := range h.Consoles {
		// Close-on-exec again at once: no container init may inherit it.
		unix.CloseOnExec(fd)
		if s.consoles == nil {
			s.consoles = map[string]*os.File{}
		}
		s.consoles[id] = os.NewFile(uintptr(fd), "ptmx") // non-blocking: pollable
	}
	s.log.WithFields(logrus.Fields{"from_boot": h.FromBoot, "consoles": len(h.Consoles)}).Info("took over after upgrade")
	return true, nil
}

func setCloexec(fd int, on bool) error {
	flag := 0
	if on {
		flag = unix.FD_CLOEXEC
	}
	_, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, flag)
	return err
}

func (s *Server) listenFD() (int, error) {
	rc, err := s.ln.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	err = rc.Control(func(f uintptr) { fd = int(f) })
	return fd, err
}

// upgrade answers OpUpgrade on conn: Upgrading, then exec. If exec fails it
// answers the error on conn and resumes as before.
func (s *Server) upgrade(conn net.Conn) {
	s.opMu.Lock() // wait for in-flight changes; none start until exec
	defer s.opMu.Unlock()
	s.mu.Lock()
	s.upgrading = true
	cs := make([]*container, 0, len(s.containers))
	for _, c := range s.containers {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	// Pause accepting without closing the socket: connections queue in the
	// backlog and the new process accepts them.
	s.ln.SetDeadline(time.Now())
	err := s.execSelf(conn, cs)
	// Still here: the exec failed. Resume exactly as a restart would.
	s.log.WithError(err).Error("upgrade failed; resuming")
	writeResponse(conn, &v1.Response{Error: v1.Errorf(v1.CodeInternal, "upgrade: %v", err)})
	for _, c := range cs {
		c.mu.Lock()
		exited := c.exit != nil
		c.mu.Unlock()
		if !exited {
			if err := s.adopt(c); err != nil {
				s.log.WithError(err).WithField(logctx.ContainerField, c.rec.ID).Error("re-attaching container after failed upgrade")
			}
		}
	}
	s.mu.Lock()
	s.upgrading = false
	s.mu.Unlock()
	s.ln.SetDeadline(time.Time{})
	s.resume <- struct{}{}
}

// execSelf detaches every container and execs; it returns only on failure.
func (s *Server) execSelf(conn net.Conn, cs []*container) error {
	lnFD, err := s.listenFD()
	if err != nil {
		return err
	}
	lockFD := int(s.lock.Fd())
	for _, c := range cs {
		c.detach()
	}
	h := handover{ListenFD: lnFD, LockFD: lockFD, FromBoot: s.bootID}
	// Every descriptor to inherit, close-on-exec cleared below and set again
	// if the exec fails.
	inherit := []int{lnFD, lockFD}
	env := os.Environ()
	if s.cfg.OneProcInits {
		env = withOwnMaxProcs(env, s.ownMaxProcs)
	}
	env = append(env, UpgradeEnv+"=1")
	if fd := s.keeper.FD(); fd >= 0 {
		inherit = append(inherit, fd)
		env = append(env, fmt.Sprintf("%s=%d", keeper.FDEnv, fd))
	}
	for _, c := range cs {
		console := c.terminal()
		if console == nil {
			continue
		}
		fd, err := masterFD(console)
		if err != nil {
			return fmt.Errorf("console of %s: %w", c.rec.ID, err)
		}
		if h.Consoles == nil {
			h.Consoles = map[string]int{}
		}
		h.Consoles[c.rec.ID] = fd
		inherit = append(inherit, fd)
	}
	if err := atomicfile.WriteJSONVolatile(s.handoverPath(), h, 0o600); err != nil {
		return err
	}
	restore := func() {
		for _, fd := range inherit {
			setCloexec(fd, true)
		}
	}
	for _, fd := range inherit {
		if err := setCloexec(fd, false); err != nil {
			restore()
			os.Remove(s.handoverPath())
			return err
		}
	}
	writeResponse(conn, &v1.Response{Upgrading: true})
	s.log.WithField("executable", s.cfg.Executable).Info("upgrading in place")
	err = unix.Exec(s.cfg.Executable, s.cfg.Args, env)
	restore()
	os.Remove(s.handoverPath())
	return errors.Join(fmt.Errorf("exec %s", s.cfg.Executable), err)
}

// Package keeper is the process above the supervisor: a child subreaper
// that starts the supervisor, starts it again whenever it dies, reaps the
// containers a dead supervisor left (they are re-parented to it) and
// records each of their exits in a file the next supervisor reads, and
// holds the containers' output FIFOs open while no supervisor does.
//
// It is kept much smaller than the supervisor on purpose: no JSON, no
// libcontainer, no logs to format, one goroutine per supervisor to hold
// descriptors and one loop that reaps. Whatever it does not do cannot
// crash it; it is never re-executed (an upgrade re-executes the supervisor
// below it), so its code changes only when it is started anew. See
// docs/architecture.md, "A supervisor crash loses nothing".
package keeper

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Config is what the keeper needs.
type Config struct {
	// StateDir is berth's state directory: the lock is
	// StateDir/supervisor/keeper.lock, exits go to ExitsDir(StateDir).
	StateDir string
	// Path, Args and Env start the supervisor (Args[0] included); the
	// keeper adds FDEnv to Env. Its stdio is the keeper's.
	Path string
	Args []string
	Env  []string
	// Log receives a line per event worth an operator's eye (default
	// stderr).
	Log io.Writer
	// Setup, if set, runs once the lock is taken, before the first
	// supervisor starts (the keeper moves into its cgroup there).
	Setup func()
}

// ErrRunning: another keeper holds the lock of the state dir.
var ErrRunning = errors.New("another keeper is running")

// restartBackoff bounds the delay between starts of a supervisor that
// keeps dying; one that ran stableRun or longer is started again at once.
const (
	firstBackoff = 100 * time.Millisecond
	maxBackoff   = 5 * time.Second
	stableRun    = 10 * time.Second
)

// drainWait bounds the wait for a dead supervisor's last messages.
const drainWait = time.Second

// keeper is the running state; only Run's goroutine touches it (the
// holder has its own lock).
type keeper struct {
	cfg      Config
	exits    string
	holder   holder
	sup      int           // the supervisor's pid, 0 when none runs
	supStart time.Time     // when it was started
	drained  chan struct{} // closed when its messages are all applied
	backoff  time.Duration
	stopping bool
}

// Run takes the keeper lock, becomes a child subreaper and keeps a
// supervisor running until SIGTERM or SIGINT: those are passed on to the
// supervisor and Run returns once it has ended. Containers still running
// then are left to init (their exits can no longer be observed).
func Run(cfg Config) error {
	if cfg.Log == nil {
		cfg.Log = os.Stderr
	}
	lock, err := takeLock(filepath.Join(cfg.StateDir, "supervisor", "keeper.lock"))
	if err != nil {
		return err
	}
	defer lock.Close()
	if cfg.Setup != nil {
		cfg.Setup()
	}
	k := &keeper{cfg: cfg, exits: ExitsDir(cfg.StateDir)}
	if err := os.MkdirAll(k.exits, 0o700); err != nil {
		return fmt.Errorf("keeper: %w", err)
	}
	// Children of a dead supervisor (and whatever they leave) come to us.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("keeper: set child subreaper: %w", err)
	}
	sigs := make(chan os.Signal, 16)
	// SIGHUP and SIGPIPE are caught (and dropped), not ignored: an ignored
	// disposition would survive the supervisor's execve.
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGPIPE)
	defer signal.Stop(sigs)
	var restart <-chan time.Time
	k.start()
	if k.sup == 0 {
		restart = time.After(k.nextBackoff())
	}
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case unix.SIGTERM, unix.SIGINT:
				k.stopping = true
				if k.sup != 0 {
					unix.Kill(k.sup, sig.(unix.Signal))
				}
			case unix.SIGCHLD:
				if k.reap() && !k.stopping {
					restart = time.After(k.nextBackoff())
				}
			}
		case <-restart:
			restart = nil
			if k.stopping {
				break // a SIGTERM came after the supervisor ended
			}
			k.start()
			if k.sup == 0 {
				restart = time.After(k.nextBackoff())
			}
		}
		if k.stopping && k.sup == 0 {
			fmt.Fprintf(cfg.Log, "berth-keeper: stopped (%d output holds released)\n", k.holder.count())
			return nil
		}
	}
}

// takeLock holds an exclusive flock on path for the keeper's life.
func takeLock(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("keeper lock: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600) // close-on-exec, as Go opens
	if err != nil {
		return nil, fmt.Errorf("keeper lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: %w", path, ErrRunning)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return f, nil
}

// nextBackoff is the delay before the next start: none after a supervisor
// that ran long enough, doubling for one that keeps dying.
func (k *keeper) nextBackoff() time.Duration {
	if !k.supStart.IsZero() && time.Since(k.supStart) >= stableRun {
		k.backoff = 0
		return 0
	}
	switch {
	case k.backoff == 0:
		k.backoff = firstBackoff
	case k.backoff < maxBackoff:
		k.backoff = min(2*k.backoff, maxBackoff)
	}
	return k.backoff
}

// start starts a supervisor with a fresh hold channel. The previous
// supervisor's messages are applied first, and holds of containers whose
// directory is gone are dropped (a Delete its supervisor did not get to
// tell us about).
func (k *keeper) start() {
	if k.drained != nil {
		select {
		case <-k.drained:
		case <-time.After(drainWait):
		}
		k.drained = nil
	}
	k.holder.prune()
	k.supStart = time.Now()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintf(k.cfg.Log, "berth-keeper: hold channel: %v\n", err)
		return
	}
	ours, theirs := fds[0], os.NewFile(uintptr(fds[1]), "keeper")
	defer theirs.Close()
	env := append(append([]string(nil), k.cfg.Env...), fmt.Sprintf("%s=%d", FDEnv, 3))
	p, err := os.StartProcess(k.cfg.Path, k.cfg.Args, &os.ProcAttr{
		Dir:   "/",
		Env:   env,
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr, theirs},
	})
	if err != nil {
		unix.Close(ours)
		fmt.Fprintf(k.cfg.Log, "berth-keeper: start supervisor %s: %v\n", k.cfg.Path, err)
		return
	}
	k.sup = p.Pid
	p.Release() // reaped by reap, never by os.Process
	drained := make(chan struct{})
	k.drained = drained
	go func() {
		defer close(drained)
		defer unix.Close(ours)
		k.holder.serve(ours)
	}()
	fmt.Fprintf(k.cfg.Log, "berth-keeper: supervisor started, pid %d\n", k.sup)
}

// reap records and reaps every child that ended; it reports whether the
// supervisor was among them.
func (k *keeper) reap() (supervisorEnded bool) {
	for {
		pid, status, err := waitNoWait()
		if err != nil || pid == 0 {
			return supervisorEnded
		}
		if pid == k.sup {
			fmt.Fprintf(k.cfg.Log, "berth-keeper: supervisor pid %d ended (%s)\n", pid, describe(status))
		} else if start, err := StartTime(pid); err == nil {
			// Recorded before it is reaped: whoever sees the process gone
			// finds its record.
			if err := WriteExit(k.exits, pid, start, status, time.Now()); err != nil {
				fmt.Fprintf(k.cfg.Log, "berth-keeper: %v\n", err)
			}
		}
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		if pid == k.sup {
			k.sup = 0
			supervisorEnded = true
		}
	}
}

// siginfo is the start of the kernel's siginfo_t for SIGCHLD on 64-bit
// Linux (x/sys/unix leaves its union opaque).
type siginfo struct {
	Signo  int32
	Errno  int32
	Code   int32
	_      int32
	Pid    int32
	UID    uint32
	Status int32
	_      [100]byte
}

// si_code values of a SIGCHLD's siginfo.
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// waitNoWait returns an ended child and its status without reaping it
// (waitid WNOWAIT): its /proc entry stays for StartTime. pid 0: none.
func waitNoWait() (int, unix.WaitStatus, error) {
	var si siginfo
	for {
		_, _, e := unix.Syscall6(unix.SYS_WAITID, unix.P_ALL, 0, uintptr(unsafe.Pointer(&si)),
			unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, 0, e
		}
		return int(si.Pid), waitStatus(si.Code, si.Status), nil
	}
}

// waitStatus encodes a siginfo's code and status as wait(2) does.
func waitStatus(code, status int32) unix.WaitStatus {
	switch code {
	case cldExited:
		return unix.WaitStatus((status & 0xff) << 8)
	case cldKilled:
		return unix.WaitStatus(status & 0x7f)
	case cldDumped:
		return unix.WaitStatus(status&0x7f | 0x80)
	}
	return unix.WaitStatus(status)
}

func describe(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return fmt.Sprintf("signal %d", ws.Signal())
	}
	return fmt.Sprintf("exit %d", ws.ExitStatus())
}

package main

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// maxLogBytes bounds supervisor.log, which lives in the state dir: a
// tmpfs, so RAM. With the one rotated copy kept, the log takes at most
// twice this.
const maxLogBytes = 8 << 20

// rotatingLog writes the supervisor's log to fd (its stderr), rotating the
// file at path when fd is that file and it grew past max: path becomes
// path.1 (the copy before is dropped) and a new file at path takes over fd,
// so panics, libcontainer and anything else writing to stderr follow it.
// When fd is anything else (the journal under systemd, a terminal, a
// pipe) it is written as is: rotating is then its reader's business.
// The supervisor's stderr survives an in-place upgrade, and so does this
// arrangement: the new binary checks fd again.
type rotatingLog struct {
	mu   sync.Mutex // serialises writes with rotation
	fd   int
	path string
	max  int64
}

func newRotatingLog(fd int, path string, max int64) *rotatingLog {
	return &rotatingLog{fd: fd, path: path, max: max}
}

func (l *rotatingLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.rotateIfDue(); err != nil {
		// Keep logging to the old file rather than lose the line.
		unix.Write(l.fd, fmt.Appendf(nil, "rotate %s: %v\n", l.path, err))
	}
	return unix.Write(l.fd, p)
}

// rotateIfDue checks fd's size (every writer of fd counts, not only this
// one) and rotates when it is the file at path and too big.
func (l *rotatingLog) rotateIfDue() error {
	var fdSt, pathSt unix.Stat_t
	if err := unix.Fstat(l.fd, &fdSt); err != nil || fdSt.Mode&unix.S_IFMT != unix.S_IFREG || fdSt.Size < l.max {
		return nil
	}
	if err := unix.Stat(l.path, &pathSt); err != nil || pathSt.Dev != fdSt.Dev || pathSt.Ino != fdSt.Ino {
		return nil // not our log file (or already rotated by someone else)
	}
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		return err
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Dup3(int(f.Fd()), l.fd, 0)
}

package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"
)

// Listener is the CRI socket and the lock that makes it ours.
type Listener struct {
	net.Listener
	lock *os.File // flock held for the process's life; nil under socket activation
}

// Close closes the listener and releases the lock. The socket file is left
// for the next berthd to replace, as a crashed berthd would leave it.
func (l *Listener) Close() error {
	err := l.Listener.Close()
	if l.lock != nil {
		l.lock.Close()
	}
	return err
}

// Listen returns the CRI listener: the socket systemd passed (LISTEN_FDS) if
// any, else a new unix socket at path, mode 0660, owned by group (a name or
// gid; "" keeps root's). A second berthd on the same path is refused: it
// cannot take the lock file beside the socket. A socket left by a dead
// berthd is replaced.
func Listen(path, group string) (*Listener, bool, error) {
	if ls, err := activation.Listeners(); err == nil && len(ls) > 0 {
		for _, l := range ls {
			if l != nil && l.Addr().Network() == "unix" {
				return &Listener{Listener: l}, true, nil
			}
		}
		return nil, false, fmt.Errorf("socket activation passed %d sockets but no unix socket", len(ls))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, false, fmt.Errorf("create socket directory: %w", err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("open lock %s.lock: %w", path, err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, false, fmt.Errorf("another berthd is serving %s (lock %s.lock is held)", path, path)
		}
		return nil, false, fmt.Errorf("lock %s.lock: %w", path, err)
	}
	// We hold the lock, so whatever socket is there belongs to a dead berthd,
	// unless some other program made it: check that nothing answers on it.
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			lock.Close()
			return nil, false, fmt.Errorf("%s is served by another process", path)
		}
		if err := os.Remove(path); err != nil {
			lock.Close()
			return nil, false, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	// Create the socket with no permissions for others from the first instant.
	old := unix.Umask(0o117)
	l, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		lock.Close()
		return nil, false, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		lock.Close()
		return nil, false, fmt.Errorf("chmod %s: %w", path, err)
	}
	if group != "" {
		gid, err := lookupGroup(group)
		if err == nil {
			err = os.Chown(path, 0, gid)
		}
		if err != nil {
			l.Close()
			lock.Close()
			return nil, false, fmt.Errorf("socket group %q: %w", group, err)
		}
	}
	return &Listener{Listener: l, lock: lock}, false, nil
}

func lookupGroup(group string) (int, error) {
	if gid, err := strconv.Atoi(group); err == nil {
		return gid, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}

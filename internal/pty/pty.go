// Package pty passes pty masters between processes the way runc's
// libcontainer does: the process that gets a terminal allocates the pty
// inside its container and sends the master over a unix socket (its
// "console socket"). berthd (exec'd processes) and the supervisor
// (containers) both receive masters and resize terminals through it.
package pty

import (
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// SocketPair returns the two ends of a console socket: the child end goes
// to the process (libcontainer's Process.ConsoleSocket), which sends its pty
// master back on the parent end.
func SocketPair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("console socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "console-parent"), os.NewFile(uintptr(fds[1]), "console-child"), nil
}

// receiveTimeout bounds the wait for a master: the process sends it while
// it starts, before its runtime's start or exec returns.
const receiveTimeout = 10 * time.Second

// Receive reads one pty master from the parent end of a SocketPair. Every
// other holder of the child end must have closed it, so that a process that
// died before sending gives EOF, not a wait.
func Receive(parent *os.File) (*os.File, error) {
	c, err := net.FileConn(parent) // dups
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	defer c.Close()
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, fmt.Errorf("console socket is %T", c)
	}
	return ReceiveConn(uc)
}

// ReceiveConn reads one pty master sent with SCM_RIGHTS on conn. The master
// is non-blocking (reads park on the poller and stop at a deadline) and
// close-on-exec.
func ReceiveConn(conn *net.UnixConn) (*os.File, error) {
	conn.SetReadDeadline(time.Now().Add(receiveTimeout))
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*4)) // room for a few fds, all closed but one
	n, oobn, _, _, err := conn.ReadMsgUnix(name, oob)
	if err != nil {
		return nil, fmt.Errorf("receive console: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, fmt.Errorf("receive console: %w", err)
	}
	var fds []int
	for i := range msgs {
		if got, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, got...)
		}
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("receive console: %d descriptors sent, want 1", len(fds))
	}
	// Go's net package receives with MSG_CMSG_CLOEXEC.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, fmt.Errorf("console: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}

// SetSize applies a window size to the terminal behind a pty master
// (TIOCSWINSZ on the master sets the slave's size; the kernel sends SIGWINCH
// to its foreground process group). 0x0 is ignored.
func SetSize(master *os.File, rows, cols uint16) error {
	if rows == 0 && cols == 0 {
		return nil
	}
	rc, err := master.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}); err != nil {
		return err
	}
	return serr
}

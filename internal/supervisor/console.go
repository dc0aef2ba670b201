package supervisor

import (
	"errors"
	"fmt"
	"github.com/berth-cri/berth/internal/pty"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Terminal containers. The container's init allocates its pty inside the
// container (so that /dev/pts is the container's own) and sends the master
// back over a console socket; the supervisor holds that master for the
// container's life: it reads the output into the log (as stdout), writes
// attachers' stdin to it and applies their resizes.
//
// What survives what:
//   - Upgrade: the master crosses the execve by descriptor (upgrade.go); the
//     reader stops at a read deadline and unread output waits in the pty
//     buffer for the new process, as it does in a FIFO.
//   - kill -9 of the supervisor: nothing else holds the master, so the kernel
//     hangs the terminal up when the process dies: the container's session
//     leader and foreground process group get SIGHUP, and reads and writes on
//     the terminal fail with EIO from then on. SIGHUP ends most programs, a
//     shell included, but not a container init in its own PID namespace
//     without a SIGHUP handler (the kernel never delivers default-action
//     signals to a namespace init): such a container keeps running with a
//     dead terminal. Unlike FIFOs (fifo.go), there is no way around this
//     short of a process per container holding the master, which the
//     supervisor exists to avoid. The restarted supervisor re-adopts the
//     container without a terminal: output written after the hang-up is
//     lost, attaches get no output and their stdin is dropped, and the exit
//     is reported like any exit it could not observe (255/Unknown).

// consoleListener is the socket an OCI runtime's --console-socket connects
// to. It lives in a fresh directory under the temp dir: a unix socket path
// must fit in 108 bytes, which a container directory may not.
type consoleListener struct {
	dir string
	ln  *net.UnixListener
}

func listenConsole() (*consoleListener, error) {
	dir, err := os.MkdirTemp("", "berth-console-")
	if err != nil {
		return nil, fmt.Errorf("console socket dir: %w", err)
	}
	path := filepath.Join(dir, "sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("console socket: %w", err)
	}
	return &consoleListener{dir: dir, ln: ln}, nil
}

func (l *consoleListener) path() string { return filepath.Join(l.dir, "sock") }

// receive accepts the runtime's connection (already queued once the runtime's
// create returned) and reads the master from it.
func (l *consoleListener) receive() (*os.File, error) {
	l.ln.SetDeadline(time.Now().Add(10 * time.Second)) // queued once the runtime's create returned
	conn, err := l.ln.AcceptUnix()
	if err != nil {
		return nil, fmt.Errorf("console socket accept: %w", err)
	}
	defer conn.Close()
	return pty.ReceiveConn(conn)
}

func (l *consoleListener) close() {
	l.ln.Close()
	os.RemoveAll(l.dir)
}

// sendEOF types the terminal's end-of-file character (VEOF, read from the
// slave's termios, which TCGETS on the master returns). Like any write to the
// master it blocks while the terminal's input buffer is full.
func sendEOF(master *os.File) error {
	rc, err := master.SyscallConn()
	if err != nil {
		return err
	}
	veof := byte(4) // ^D, the default
	rc.Control(func(fd uintptr) {
		if t, err := unix.IoctlGetTermios(int(fd), unix.TCGETS); err == nil && t.Cc[unix.VEOF] != 0 {
			veof = t.Cc[unix.VEOF]
		}
	})
	_, err = master.Write([]byte{veof})
	return err
}

// masterFD returns the descriptor number of a pty master without putting it
// in blocking mode (os.File.Fd would).
func masterFD(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	err = rc.Control(func(u uintptr) { fd = int(u) })
	return fd, err
}

// ttyReader reads a pty master, turning EIO (every slave descriptor closed:
// the container's processes are gone) into EOF.
type ttyReader struct{ f *os.File }

func (r ttyReader) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	if err != nil && errors.Is(err, unix.EIO) {
		err = io.EOF
	}
	return n, err
}

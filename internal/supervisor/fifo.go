package supervisor

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Container output goes through named FIFOs in the container's directory, not
// anonymous pipes, because a supervisor restarted after kill -9 must find the
// same pipes again: it reopens them by path.
//
// The SIGPIPE problem: a writer whose pipe has no reader left gets SIGPIPE
// (and EPIPE), which kills most programs. While no supervisor runs, someone
// must still hold a read end. Options weighed:
//   - a helper process per container holding the read end: costs a process
//     per container, which the supervisor exists to avoid;
//   - the supervisor passing O_RDWR ends to a helper before dying: a kill -9
//     gives no chance to do so;
//   - the container's own stdout/stderr descriptor opened O_RDWR on the FIFO
//     (chosen). The container then counts as a reader of its own pipe, so a
//     write can never hit EPIPE, whoever else is gone. While no supervisor
//     reads, the 64 KiB pipe buffer fills and the container blocks on write,
//     the same back-pressure a slow log reader causes, and the restarted
//     supervisor drains it in order. The cost: the reader sees EOF only when
//     every holder of the write end is gone, which is exactly when all the
//     container's processes have exited, as with a normal pipe; and a
//     container could read back its own output, which it already had.
// What is still lost on kill -9: bytes the dead supervisor had read but not
// yet written (at most one read buffer per stream).

// fifoNames are the container output FIFOs, in stream order.
var fifoNames = [...]string{"stdout", "stderr"}

// makeFifo creates a FIFO at path, accepting one left by an earlier attempt.
func makeFifo(path string) error {
	if err := unix.Mkfifo(path, 0o600); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("mkfifo %s: %w", path, err)
	}
	return nil
}

// openContainerEnd opens the end a container writes to: O_RDWR, see above.
// It never blocks, unlike O_WRONLY on a FIFO without reader.
func openContainerEnd(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open fifo %s: %w", path, err)
	}
	return f, nil
}

// openReader opens the supervisor's read end, non-blocking so that reads
// park on the Go poller instead of a thread, and so that an upgrade can stop
// them with a read deadline.
func openReader(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open fifo %s: %w", path, &os.PathError{Op: "open", Path: path, Err: err})
	}
	return os.NewFile(uintptr(fd), path), nil
}

// openStdin opens the stdin FIFO for a container (the read end, blocking mode
// as programs expect) and the write end the supervisor holds so that the
// container does not read EOF before an attach (or ever, unless stdin_once).
func openStdin(path string) (containerEnd, holder *os.File, err error) {
	if err := makeFifo(path); err != nil {
		return nil, nil, err
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open stdin fifo %s: %w", path, err)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("stdin fifo %s: %w", path, err)
	}
	containerEnd = os.NewFile(uintptr(fd), path)
	holder, err = openStdinHolder(path)
	if err != nil {
		containerEnd.Close()
		return nil, nil, err
	}
	return containerEnd, holder, nil
}

// openStdinHolder opens a write end of the stdin FIFO; it fails (ENXIO) when
// no reader is left, i.e. the container is gone.
func openStdinHolder(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open stdin fifo %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

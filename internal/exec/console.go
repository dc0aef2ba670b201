package exec

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// pollable wraps fd as a non-blocking *os.File: reads park on the Go poller
// instead of a thread and can be stopped with a deadline.
func pollable(fd int, name string) (*os.File, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("console %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// openPty allocates a pty pair on the host: a pollable master and the slave.
func openPty() (master, slave *os.File, err error) {
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(mfd)
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetUint32(mfd, unix.TIOCGPTN)
	if err != nil {
		unix.Close(mfd)
		return nil, nil, fmt.Errorf("pty number: %w", err)
	}
	path := "/dev/pts/" + strconv.Itoa(int(n))
	sfd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(mfd)
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	// Raw from the start: this pty only relays the runtime's copy of the
	// container's own pty, which already did the line discipline. The
	// runtime makes it raw too, but only once it runs; output written
	// before that would get a second CR ("\r\r\n").
	if err := makeRaw(sfd); err != nil {
		unix.Close(mfd)
		unix.Close(sfd)
		return nil, nil, fmt.Errorf("raw mode on %s: %w", path, err)
	}
	if master, err = pollable(mfd, "/dev/ptmx"); err != nil {
		unix.Close(sfd)
		return nil, nil, err
	}
	return master, os.NewFile(uintptr(sfd), path), nil
}

// makeRaw puts a terminal in raw mode, as cfmakeraw(3) does.
func makeRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}

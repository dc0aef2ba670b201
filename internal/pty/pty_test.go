package pty

import (
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/testsupport"
)

// TestReceiveAndSetSize sends a pty master over a SocketPair as a
// container's init would, receives it, and resizes the terminal through it.
func TestReceiveAndSetSize(t *testing.T) {
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	testsupport.Require(t, err == nil, "no ptys here: %v", err)
	defer unix.Close(mfd)
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(mfd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()

	parent, child, err := SocketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	if err := unix.Sendmsg(int(child.Fd()), []byte("/dev/ptmx"), unix.UnixRights(mfd), nil, 0); err != nil {
		t.Fatal(err)
	}
	child.Close()
	master, err := Receive(parent)
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	if master.Name() != "/dev/ptmx" {
		t.Errorf("received %q", master.Name())
	}
	for _, sz := range []struct{ rows, cols uint16 }{{30, 100}, {0, 0}} {
		if err := SetSize(master, sz.rows, sz.cols); err != nil {
			t.Fatal(err)
		}
	}
	ws, err := unix.IoctlGetWinsize(int(slave.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		t.Fatal(err)
	}
	if ws.Row != 30 || ws.Col != 100 { // 0x0 is ignored
		t.Errorf("slave size %dx%d, want 30x100", ws.Row, ws.Col)
	}

	// A sender that goes away without sending: EOF, not a wait.
	parent2, child2, err := SocketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent2.Close()
	child2.Close()
	if _, err := Receive(parent2); err == nil {
		t.Error("receive from a closed socket succeeded")
	}
}

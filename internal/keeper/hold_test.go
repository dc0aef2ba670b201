package keeper

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/testsupport"
)

// channel is a hold channel served by h, as the keeper makes it.
func channel(t *testing.T, h *holder) (*Conn, <-chan struct{}) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer unix.Close(fds[0])
		h.serve(fds[0])
	}()
	return &Conn{fd: fds[1]}, done
}

// fifo makes a FIFO in dir and returns a read end and a write end.
func fifo(t *testing.T, dir, name string) (r, w *os.File) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, err = os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return r, w
}

func heldCount(h *holder) func() bool {
	return func() bool { return h.count() > 0 }
}

// TestHoldKeepsUnreadOutput: what a writer left in a FIFO survives every
// other holder (the supervisor, the container) once the keeper holds the
// read end, and a reader opening the FIFO by its path again reads it all;
// a drop lets the pipe go.
func TestHoldKeepsUnreadOutput(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "c1")
	os.Mkdir(key, 0o700)
	var h holder
	conn, done := channel(t, &h)
	r, w := fifo(t, key, "stdout")
	if err := conn.Hold(key, []*os.File{r}); err != nil {
		t.Fatal(err)
	}
	testsupport.PollUntil(t, "the hold", 5*time.Second, heldCount(&h))
	w.WriteString("written while nobody reads\n")
	w.Close() // the container ends
	r.Close() // the supervisor dies
	again, err := os.OpenFile(filepath.Join(key, "stdout"), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, _ := again.Read(buf)
	if string(buf[:n]) != "written while nobody reads\n" {
		t.Fatalf("read again %q", buf[:n])
	}
	again.Close()
	if err := conn.Drop(key); err != nil {
		t.Fatal(err)
	}
	testsupport.PollUntil(t, "the drop", 5*time.Second, func() bool { return h.count() == 0 })
	conn.Close()
	<-done
}

// TestHoldReplacesAndPrunes: a second hold of a key replaces the first
// (closing what it held); prune drops the keys whose path is gone; a
// message that is not ours is ignored with what it carried.
func TestHoldReplacesAndPrunes(t *testing.T) {
	dir := t.TempDir()
	var h holder
	conn, done := channel(t, &h)
	keep, gone := filepath.Join(dir, "keep"), filepath.Join(dir, "gone")
	os.Mkdir(keep, 0o700)
	os.Mkdir(gone, 0o700)
	r1, _ := fifo(t, keep, "a")
	r2, _ := fifo(t, keep, "b")
	r3, _ := fifo(t, gone, "a")
	conn.Hold(keep, []*os.File{r1})
	conn.Hold(gone, []*os.File{r3})
	conn.Hold(keep, []*os.File{r2})
	conn.send([]byte("x"+keep), nil)                           // unknown kind
	conn.send([]byte("d"), nil)                                // no key
	conn.send([]byte("h"+gone), unix.UnixRights(int(r1.Fd()))) // replaces r3's hold
	testsupport.PollUntil(t, "two keys", 5*time.Second, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.held) == 2 && len(h.held[keep]) == 1 && h.held[keep][0].Name() == "received"
	})
	os.RemoveAll(gone)
	h.prune()
	h.mu.Lock()
	_, stillGone := h.held[gone]
	_, stillKept := h.held[keep]
	h.mu.Unlock()
	if stillGone || !stillKept {
		t.Errorf("after prune: gone %v kept %v", stillGone, stillKept)
	}
	conn.Close()
	<-done
}

// TestConnWithoutKeeper: a supervisor without a keeper (nil Conn) goes on.
func TestConnWithoutKeeper(t *testing.T) {
	var c *Conn
	if c.Hold("k", []*os.File{os.Stdin}) != nil || c.Drop("k") != nil || c.FD() != -1 {
		t.Fatal("nil Conn")
	}
	c.Close()
	t.Setenv(FDEnv, "")
	os.Unsetenv(FDEnv)
	if ConnFromEnv() != nil {
		t.Fatal("no variable, no keeper")
	}
	for _, v := range []string{"x", "1", "999"} { // not a number, stdio, not open
		t.Setenv(FDEnv, v)
		if ConnFromEnv() != nil {
			t.Errorf("%s=%s: a keeper", FDEnv, v)
		}
		if _, ok := os.LookupEnv(FDEnv); ok {
			t.Errorf("%s left in the environment", FDEnv)
		}
	}
	f, _ := os.Open(os.DevNull)
	defer f.Close()
	t.Setenv(FDEnv, strconv.Itoa(int(f.Fd()))) // open, but no socket
	if ConnFromEnv() != nil {
		t.Error("a file that is no socket taken for the channel")
	}
}

// TestConnFromEnv: the channel's descriptor is taken, made close-on-exec,
// and a dead keeper makes Hold fail without SIGPIPE.
func TestConnFromEnv(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(FDEnv, strconv.Itoa(fds[1]))
	c := ConnFromEnv()
	if c == nil || c.FD() != fds[1] {
		t.Fatalf("conn %+v", c)
	}
	if flags, _ := unix.FcntlInt(uintptr(fds[1]), unix.F_GETFD, 0); flags&unix.FD_CLOEXEC == 0 {
		t.Error("channel not close-on-exec")
	}
	unix.Close(fds[0]) // the keeper is gone
	if err := c.Drop("k"); err == nil {
		t.Error("drop to a dead keeper: no error")
	}
	if err := c.send(make([]byte, 5000), nil); err == nil {
		t.Error("oversized message sent")
	}
	c.Close()
}

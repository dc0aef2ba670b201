package keeper

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The hold channel is a SOCK_SEQPACKET socket pair: the keeper keeps one
// end, the supervisor gets the other as a descriptor (FDEnv names its
// number). The supervisor sends two kinds of message, one datagram each,
// never an answer back:
//   - "h<key>" with descriptors attached (SCM_RIGHTS): hold these for key,
//     replacing what was held for it;
//   - "d<key>": close what is held for key.
// The key is a container's directory. The supervisor holds a container's
// output FIFOs' read ends here: a FIFO's buffer lives as long as anyone
// has it open, so what a container wrote and did not see read survives a
// supervisor's death, also when the container ends before the next
// supervisor opens the FIFO again by its path.

// FDEnv names the supervisor's end of the hold channel in its environment.
const FDEnv = "_BERTH_KEEPER_FD"

// maxHeldFiles bounds the descriptors of one message (stdout, stderr).
const maxHeldFiles = 4

// holder is what the keeper holds, by key.
type holder struct {
	mu   sync.Mutex
	held map[string][]*os.File
}

func (h *holder) hold(key string, files []*os.File) {
	h.mu.Lock()
	old := h.held[key]
	if h.held == nil {
		h.held = map[string][]*os.File{}
	}
	h.held[key] = files
	h.mu.Unlock()
	closeAll(old)
}

func (h *holder) drop(key string) {
	h.mu.Lock()
	old := h.held[key]
	delete(h.held, key)
	h.mu.Unlock()
	closeAll(old)
}

// prune drops every key whose path is gone (its container deleted by a
// supervisor that died before saying so).
func (h *holder) prune() {
	h.mu.Lock()
	var gone []string
	for key := range h.held {
		if _, err := os.Lstat(key); errors.Is(err, os.ErrNotExist) {
			gone = append(gone, key)
		}
	}
	h.mu.Unlock()
	for _, key := range gone {
		h.drop(key)
	}
}

func (h *holder) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.held)
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// serve applies the messages arriving on fd until the peer's end is
// closed (the supervisor is gone and nothing it sent is left unread).
func (h *holder) serve(fd int) {
	buf := make([]byte, 4096+1)
	oob := make([]byte, unix.CmsgSpace(4*maxHeldFiles))
	for {
		n, oobn, flags, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || (n == 0 && oobn == 0) {
			return
		}
		files := ParseRights(oob[:oobn])
		if n == 0 || n > 4096 || flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
			closeAll(files) // not a message of ours
			continue
		}
		key := string(buf[1:n])
		switch {
		case buf[0] == 'h' && key != "":
			h.hold(key, files)
		case buf[0] == 'd' && key != "":
			closeAll(files)
			h.drop(key)
		default:
			closeAll(files)
		}
	}
}

// ParseRights returns the descriptors of the SCM_RIGHTS messages in oob as
// files, each close-on-exec.
func ParseRights(oob []byte) []*os.File {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var files []*os.File
	for i := range msgs {
		fds, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd) // asked for with MSG_CMSG_CLOEXEC; be sure regardless
			files = append(files, os.NewFile(uintptr(fd), "received"))
		}
	}
	return files
}

// Conn is the supervisor's end of the hold channel. A nil *Conn (no keeper
// above this supervisor) does nothing.
type Conn struct {
	fd int
}

// ConnFromEnv returns the hold channel named by FDEnv and removes the
// variable (nothing the supervisor starts may see it); nil when the
// supervisor runs without a keeper. The descriptor is close-on-exec.
func ConnFromEnv() *Conn {
	v, ok := os.LookupEnv(FDEnv)
	if !ok {
		return nil
	}
	os.Unsetenv(FDEnv)
	var fd int
	if _, err := fmt.Sscanf(v, "%d", &fd); err != nil || fd < 3 {
		return nil
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil
	}
	unix.CloseOnExec(fd)
	return &Conn{fd: fd}
}

// FD is the channel's descriptor (an in-place upgrade hands it over), -1
// without a keeper.
func (c *Conn) FD() int {
	if c == nil {
		return -1
	}
	return c.fd
}

// Hold asks the keeper to hold files for key (replacing what it held).
func (c *Conn) Hold(key string, files []*os.File) error {
	if c == nil || len(files) == 0 {
		return nil
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	return c.send(append([]byte{'h'}, key...), unix.UnixRights(fds...))
}

// Drop tells the keeper to close what it holds for key.
func (c *Conn) Drop(key string) error {
	if c == nil {
		return nil
	}
	return c.send(append([]byte{'d'}, key...), nil)
}

// send never blocks for long and never raises SIGPIPE: the keeper reads
// at once, and a dead keeper must not stop the supervisor.
func (c *Conn) send(msg, oob []byte) error {
	if len(msg) > 4096 {
		return fmt.Errorf("keeper message too long (%d bytes)", len(msg))
	}
	for try := 0; ; try++ {
		err := unix.Sendmsg(c.fd, msg, oob, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
		case errors.Is(err, unix.EAGAIN) && try < 100:
			time.Sleep(time.Millisecond)
		default:
			return fmt.Errorf("keeper: %w", err)
		}
	}
}

// Close closes the supervisor's end.
func (c *Conn) Close() {
	if c != nil {
		unix.Close(c.fd)
	}
}

package streaming

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/netns"
	"github.com/berth-cri/berth/internal/supervisor/client"
)

// runtime serves the sessions of the streaming server.
type runtime struct {
	s *Service
}

// Exec runs a streaming exec. A non-zero exit is reported as a
// utilexec.ExitError, which the server turns into the exit-code status
// kubectl and crictl propagate.
func (r *runtime) Exec(ctx context.Context, containerID string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	t, err := r.s.lookup.ExecTarget(ctx, containerID)
	if err != nil {
		return err
	}
	code, err := r.s.execer.Stream(ctx, t, cmd, in, out, errw, tty, resize)
	if err != nil {
		return err
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

// Attach connects the session to the container's live stdio through the
// supervisor: output comes from an attach connection (the log keeps
// receiving it too). Without a tty, stdin is written to the container's stdin
// FIFO; with one, stdin and resizes travel on the attach connection to the
// terminal the supervisor holds. With stdin_once, stdin is closed for good
// when this first session's stdin ends.
func (r *runtime) Attach(ctx context.Context, containerID string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	at, err := r.s.lookup.AttachTarget(ctx, containerID)
	if err != nil {
		return err
	}
	a, err := r.s.sup.Attach(ctx, at.ID)
	if err != nil {
		return err
	}
	defer a.Close()
	stop := context.AfterFunc(ctx, func() { a.Close() })
	defer stop()

	if a.State.Terminal {
		r.attachTerminal(ctx, a, at, in, resize)
	} else if err := r.attachStdinFIFO(ctx, a, at, in); err != nil {
		return err
	}
	// A terminal has one output stream, which kubelet reports as stdout.
	err = a.Copy(writerOrNil(out), writerOrNil(errw))
	if ctx.Err() != nil {
		err = nil // the client left: a normal end of an attach
	}
	if out != nil {
		out.Close()
	}
	if errw != nil {
		errw.Close()
	}
	return err
}

// attachTerminal feeds a terminal container from the session: resize events
// and stdin go to the supervisor as attach frames, in order. The goroutines
// end when the session does (the server closes in and the resize channel; a
// closed attachment fails their sends). The end of stdin is sent in-band, so
// that a stdin_once container gets its end of input after the last byte.
func (r *runtime) attachTerminal(ctx context.Context, a *client.Attachment, at AttachTarget, in io.Reader, resize <-chan remotecommand.TerminalSize) {
	if resize != nil {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case sz, ok := <-resize:
					if !ok {
						return
					}
					if err := a.Resize(sz.Height, sz.Width); err != nil {
						return
					}
				}
			}
		}()
	}
	if in != nil && at.Stdin && a.State.StdinOpen {
		go func() {
			io.Copy(a, in)
			if err := a.CloseStdin(); err != nil && at.StdinOnce {
				// The session ended first and closed the attachment: close
				// stdin out of band, as for a container without a tty.
				r.closeStdin(ctx, at.ID)
			}
		}()
	}
}

// attachStdinFIFO copies the session's stdin into the container's stdin FIFO.
func (r *runtime) attachStdinFIFO(ctx context.Context, a *client.Attachment, at AttachTarget, in io.Reader) error {
	if in == nil || !at.Stdin || a.State.StdinPath == "" {
		return nil
	}
	fifo, err := openStdinFIFO(a.State.StdinPath)
	if err != nil {
		return err
	}
	id := at.ID
	// This goroutine ends when in does: the server closes it with the
	// session, which is also when a stdin_once container gets EOF.
	go func() {
		io.Copy(fifo, in)
		fifo.Close()
		if at.StdinOnce {
			// The first attacher is done with stdin: the container
			// reads EOF once every writer is gone.
			r.closeStdin(ctx, id)
		}
	}()
	return nil
}

// closeStdin closes a stdin_once container's stdin for good, even when the
// session (ctx) already ended.
func (r *runtime) closeStdin(ctx context.Context, id string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := r.s.sup.CloseStdin(cctx, id); err != nil {
		r.s.log.WithError(err).WithField("id", id).Warn("close stdin after attach")
	}
}

// writerOrNil keeps a nil interface nil (Copy discards nil writers).
func writerOrNil(w io.WriteCloser) io.Writer {
	if w == nil {
		return nil
	}
	return w
}

// openStdinFIFO opens the write end of a container's stdin FIFO,
// non-blocking (pollable), so that a container that never reads cannot pin a
// goroutine forever: Close ends a blocked write. ENXIO means no reader is
// left: the container is gone.
func openStdinFIFO(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENXIO) || errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("container stdin %s: %w", path, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		return nil, fmt.Errorf("open container stdin %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// dialTimeout bounds the connect inside the pod.
const dialTimeout = 10 * time.Second

// PortForward connects stream to localhost:port inside the sandbox's network
// namespace (the host's loopback for a host-network sandbox) and copies both
// ways until the pod's side closes or the session ends.
func (r *runtime) PortForward(ctx context.Context, podSandboxID string, port int32, stream io.ReadWriteCloser) error {
	path, err := r.s.lookup.SandboxNetNS(ctx, podSandboxID)
	if err != nil {
		return err
	}
	conn, err := dialLoopback(ctx, path, port)
	if err != nil {
		return fmt.Errorf("port forward to %d in sandbox %s: %w", port, podSandboxID, err)
	}
	defer conn.Close()
	toPod := make(chan struct{})
	go func() {
		defer close(toPod)
		io.Copy(conn, stream)
		// The client finished sending: pass the half-close on.
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	fromPod := make(chan error, 1)
	go func() {
		_, err := io.Copy(stream, conn)
		fromPod <- err
	}()
	select {
	case err = <-fromPod:
	case <-ctx.Done():
		err = nil
	}
	// Returning closes the stream (the server does), which ends the copy
	// towards the pod; conn closes by the defer.
	return err
}

// dialLoopback dials localhost:port, IPv4 then IPv6, in the network
// namespace at path ("" = berthd's own). The socket is created on a thread
// inside the namespace and stays there; connecting completes on any thread.
func dialLoopback(ctx context.Context, path string, port int32) (net.Conn, error) {
	var conn net.Conn
	dial := func() error {
		d := net.Dialer{Timeout: dialTimeout}
		var err error
		for _, host := range []string{"127.0.0.1", "::1"} {
			conn, err = d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(int(port))))
			if err == nil {
				return nil
			}
		}
		return err
	}
	if path == "" {
		return conn, dial()
	}
	err := netns.Do(path, dial)
	return conn, err
}

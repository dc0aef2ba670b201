package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logctx"
	"github.com/berth-cri/berth/internal/proctree"
)

// ExecSession is a process the supervisor runs in a container (OpExec).
type ExecSession struct {
	// Pid is the process's pid in berthd's PID namespace.
	Pid int
	// Pidfd refers to the process: it stays valid (and never names another
	// process) whatever happens to the supervisor. Closed by Close.
	Pidfd *os.File

	conn *net.UnixConn
	br   *bufio.Reader
	kill sync.Once
}

// Exec starts req.Process in container id with files as its stdio (see
// v1.ExecRequest for their order). The files are the caller's: it may close
// its copies once Exec returned. An exec is never sent twice: a connection
// lost after the request went out is an error (errdefs.ErrUnavailable).
func (c *Client) Exec(ctx context.Context, id string, req v1.ExecRequest, files []*os.File) (*ExecSession, error) {
	return c.exec(ctx, v1.OpExec, id, req, files)
}

// ExecCommand is Exec for the command fields of req (req.Args...): the
// supervisor builds the process from the container's bundle. A supervisor
// before 1.5 answers errdefs.ErrUnimplemented having done nothing; the
// caller may then send the whole process with Exec (the same files).
func (c *Client) ExecCommand(ctx context.Context, id string, req v1.ExecRequest, files []*os.File) (*ExecSession, error) {
	return c.exec(ctx, v1.OpExecCommand, id, req, files)
}

func (c *Client) exec(ctx context.Context, op v1.Op, id string, req v1.ExecRequest, files []*os.File) (*ExecSession, error) {
	r := &v1.Request{Version: v1.Version, Op: op, ID: id, Exec: &req, RequestID: logctx.RequestID(ctx)}
	data, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode exec: %w", err)
	}
	data = append(data, '\n')
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	unavailable := func(err error) error {
		return fmt.Errorf("supervisor exec %s: %w: %w", id, errdefs.ErrUnavailable, err)
	}
	var conn *net.UnixConn
	for {
		if err = c.retry.wait(ctx); err != nil {
			return nil, unavailable(err)
		}
		if conn, err = c.dial(ctx); err == nil {
			c.retry.connected()
			break
		}
		if ctx.Err() != nil {
			return nil, unavailable(err)
		}
		c.retry.failed()
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	n, _, err := conn.WriteMsgUnix(data, unix.UnixRights(fds...), nil)
	if err == nil && n < len(data) {
		_, err = conn.Write(data[n:])
	}
	if err != nil {
		conn.Close()
		return nil, unavailable(err)
	}
	line, rest, pidfd, err := readFirstLine(conn)
	if err != nil {
		conn.Close()
		return nil, unavailable(err)
	}
	var resp v1.Response
	if err := json.Unmarshal(line, &resp); err != nil {
		conn.Close()
		closeFile(pidfd)
		return nil, unavailable(err)
	}
	if resp.Error != nil {
		conn.Close()
		closeFile(pidfd)
		return nil, toErrdefs(r, resp.Error)
	}
	if resp.ExecStarted == nil || pidfd == nil {
		conn.Close()
		closeFile(pidfd)
		return nil, unavailable(errors.New("no exec_started answer with a pidfd"))
	}
	return &ExecSession{
		Pid: resp.ExecStarted.Pid, Pidfd: pidfd, conn: conn,
		br: bufio.NewReader(io.MultiReader(bytes.NewReader(rest), conn)),
	}, nil
}

// readFirstLine reads up to the first newline, with the descriptor that came
// with it; rest is what was read past the newline.
func readFirstLine(conn *net.UnixConn) (line, rest []byte, fd *os.File, err error) {
	var got []byte
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*2))
	for {
		n, oobn, _, _, rerr := conn.ReadMsgUnix(buf, oob)
		// recvmsg's -1 comes through on some errors (a reset connection
		// under load did it): nothing was read.
		n, oobn = max(n, 0), max(oobn, 0)
		if oobn > 0 {
			if msgs, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil {
				for i := range msgs {
					fds, _ := unix.ParseUnixRights(&msgs[i])
					for _, f := range fds {
						if fd == nil {
							fd = os.NewFile(uintptr(f), "pidfd")
						} else {
							unix.Close(f)
						}
					}
				}
			}
		}
		got = append(got, buf[:n]...)
		if i := bytes.IndexByte(got, '\n'); i >= 0 {
			return got[:i+1], got[i+1:], fd, nil
		}
		if rerr == nil && n == 0 {
			rerr = io.ErrUnexpectedEOF
		}
		if rerr != nil {
			closeFile(fd)
			return nil, nil, nil, rerr
		}
	}
}

func closeFile(f *os.File) {
	if f != nil {
		f.Close()
	}
}

// Wait returns the process's exit code (128+signal for a signal death) once
// it ended. If the supervisor went away first, the process is killed
// through its pidfd, Wait waits for it to end, and the error wraps
// errdefs.ErrUnavailable: its exit code is lost.
func (s *ExecSession) Wait() (int, error) {
	line, err := s.br.ReadBytes('\n')
	var resp v1.Response
	if err == nil {
		err = json.Unmarshal(line, &resp)
	}
	if err == nil && resp.ExecExit != nil {
		return resp.ExecExit.ExitCode, nil
	}
	if err == nil {
		err = errors.New("answer without exec_exit")
	}
	killPidfdTree(s.Pidfd, s.Pid)
	waitPidfd(s.Pidfd)
	return -1, fmt.Errorf("exec %d: supervisor gone before the process ended: %w: %w", s.Pid, errdefs.ErrUnavailable, err)
}

// Kill has the supervisor kill the process and everything it started; Wait
// then returns its exit. It may be called more than once, and concurrently
// with Wait.
func (s *ExecSession) Kill() {
	s.kill.Do(func() { s.conn.CloseWrite() })
}

// Close ends the session: a process still running is killed (the
// supervisor sees the connection close).
func (s *ExecSession) Close() {
	s.conn.Close()
	s.Pidfd.Close()
}

// killPidfdTree kills the process behind pidfd and, while it is still the
// same process, whatever it started. Used only when the supervisor (its
// parent) is gone, so the process is nobody's waiting child.
func killPidfdTree(pidfd *os.File, pid int) {
	if unix.PidfdSendSignal(int(pidfd.Fd()), unix.SIGSTOP, nil, 0) != nil {
		return // already ended
	}
	proctree.Kill(pid)
	unix.PidfdSendSignal(int(pidfd.Fd()), unix.SIGKILL, nil, 0)
}

// waitPidfd blocks until the process behind pidfd ended.
func waitPidfd(pidfd *os.File) {
	fds := []unix.PollFd{{Fd: int32(pidfd.Fd()), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

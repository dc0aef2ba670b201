package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/proctree"
)

// Execs run here rather than in berthd because libcontainer re-executes the
// calling binary as the exec'd process's init: this binary is a quarter of
// berthd's size, starts in ~1.5 ms instead of ~6.5 ms (berthd's package
// initialisers), and runs from a copy sealed once at start, where berthd
// would have to seal a fresh copy for every exec. That is most of a probe's
// cost.

// serveExec answers OpExec and OpExecCommand (see v1.ExecRequest) on conn. files came with the
// request; they are closed here once the process has its copies.
func (s *Server) serveExec(ctx context.Context, conn *net.UnixConn, br *bufio.Reader, req *v1.Request, files []*os.File) {
	start := time.Now()
	p, pidfd, err := s.startExec(req, files)
	closeFiles(files)
	if err != nil {
		e := toAPIError(err)
		s.logResult(ctx, req.Op, e, time.Since(start))
		writeResponse(conn, &v1.Response{Error: e})
		return
	}
	s.logResult(ctx, req.Op, nil, time.Since(start))
	pid, _ := p.Pid()
	defer s.untrackExec(pid)
	// The pidfd rides on the answer: should this process go away (crash,
	// upgrade) before the exec ends, the client can still kill it safely.
	err = writeResponseFiles(conn, &v1.Response{ExecStarted: &v1.ExecStarted{Pid: pid}}, pidfd)
	pidfd.Close()

	exited := make(chan int, 1)
	go func() { exited <- waitExec(p) }()
	hangup := make(chan struct{})
	if err == nil {
		go func() {
			io.Copy(io.Discard, br) // ends when the client closes its side
			close(hangup)
		}()
	} else {
		close(hangup) // nobody to report to
	}
	var code int
	select {
	case code = <-exited:
	case <-hangup:
		proctree.Kill(pid)
		code = <-exited
	}
	writeResponse(conn, &v1.Response{ExecExit: &v1.ExecExit{ExitCode: code}})
}

// startExec checks the request and starts the process; the pid is tracked
// (see reaper.go) until untrackExec.
func (s *Server) startExec(req *v1.Request, files []*os.File) (*libcontainer.Process, *os.File, error) {
	// Shared with other operations; an upgrade waits for starts in flight
	// (not for running execs: their connections close with the exec, and
	// the client then kills them through the pidfd).
	s.opMu.RLock()
	defer s.opMu.RUnlock()
	x := req.Exec
	if err := checkExec(req.Op, x); err != nil {
		return nil, nil, err
	}
	c, err := s.get(req.ID)
	if err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	rec, exited := c.rec, c.exit != nil
	c.mu.Unlock()
	if rec.Kind != v1.RuntimeLibcontainer {
		return nil, nil, v1.Errorf(v1.CodeInvalidArgument, "container %s is of kind %s: exec through its runtime binary", rec.ID, rec.Kind)
	}
	if exited {
		return nil, nil, v1.Errorf(v1.CodeFailedPrecondition, "container %s is not running", rec.ID)
	}
	sp := x.Process
	if req.Op == v1.OpExecCommand {
		base, err := c.specProcess()
		if err != nil {
			return nil, nil, err
		}
		sp = commandProcess(base, x)
	}
	p, err := execProcess(sp)
	if err != nil {
		return nil, nil, err
	}
	if err := assignExecFiles(p, sp, x, files); err != nil {
		return nil, nil, err
	}
	lc, err := loadContainer(&rec)
	if err != nil {
		return nil, nil, err
	}
	if st, err := lc.Status(); err != nil || st != libcontainer.Running {
		return nil, nil, v1.Errorf(v1.CodeFailedPrecondition, "container %s is %v, not running (%v)", rec.ID, st, err)
	}
	if err := lc.Run(p); err != nil {
		if errors.Is(err, libcontainer.ErrNotRunning) {
			return nil, nil, v1.Errorf(v1.CodeFailedPrecondition, "container %s is not running", rec.ID)
		}
		// The message is libcontainer's, kept whole: berthd tells a command
		// that cannot run (exit 126/127) from it.
		return nil, nil, v1.Errorf(v1.CodeInternal, "exec in %s: %v", rec.ID, err)
	}
	pid, _ := p.Pid()
	s.trackExec(pid)
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		proctree.Kill(pid)
		p.Wait()
		s.untrackExec(pid)
		return nil, nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	return p, os.NewFile(uintptr(fd), "pidfd"), nil
}

// checkExec checks an exec request's shape: OpExec carries the process,
// OpExecCommand the command fields only.
func checkExec(op v1.Op, x *v1.ExecRequest) error {
	switch {
	case x == nil:
		return v1.Errorf(v1.CodeInvalidArgument, "exec needs a command")
	case op == v1.OpExec && (x.Process == nil || len(x.Process.Args) == 0 || x.Process.Args[0] == ""):
		return v1.Errorf(v1.CodeInvalidArgument, "exec needs a command")
	case op == v1.OpExecCommand && x.Process != nil:
		return v1.Errorf(v1.CodeInvalidArgument, "exec_command takes the command fields, not a process")
	case op == v1.OpExecCommand && (len(x.Args) == 0 || x.Args[0] == ""):
		return v1.Errorf(v1.CodeInvalidArgument, "exec needs a command")
	}
	return nil
}

// specProcess is the process of the container's spec, read from the bundle
// this supervisor created it from at the container's first exec and kept:
// berthd writes a bundle's spec once, at create, and decoding it again for
// every probe (one every 2 s per container on a busy node) was 3% of the
// supervisor's CPU. Reading it here rather than in berthd keeps a probe's
// request small and berthd free of a spec decode per probe.
func (c *container) specProcess() (*specs.Process, error) {
	c.mu.Lock()
	p, bundle := c.execBase, c.rec.Bundle
	c.mu.Unlock()
	if p != nil {
		return p, nil
	}
	spec, err := readSpec(bundle)
	if err != nil {
		return nil, v1.Errorf(v1.CodeFailedPrecondition, "exec: the container's spec: %v", err)
	}
	if spec.Process == nil {
		return nil, v1.Errorf(v1.CodeFailedPrecondition, "exec: the container's spec has no process")
	}
	c.mu.Lock()
	c.execBase = spec.Process
	c.mu.Unlock()
	return spec.Process, nil
}

// commandProcess builds OpExecCommand's process: the container's own
// (base, which it does not change), with the request's command, terminal
// and overrides.
func commandProcess(base *specs.Process, x *v1.ExecRequest) *specs.Process {
	sp := *base
	sp.Args, sp.Terminal, sp.ConsoleSize = x.Args, x.Terminal, x.ConsoleSize
	// Clipped: an append to this exec's env never writes into base's.
	sp.Env = overrideEnv(slices.Clip(sp.Env), x.Env)
	if x.User != nil {
		sp.User = *x.User
	}
	if x.Cwd != "" {
		sp.Cwd = x.Cwd
	}
	return &sp
}

// overrideEnv returns env with each KEY=value of over replacing the entries
// of the same key, or appended when env has none.
func overrideEnv(env, over []string) []string {
	if len(over) == 0 {
		return env
	}
	out := slices.Clone(env)
	for _, kv := range over {
		key, _, _ := strings.Cut(kv, "=")
		found := false
		for i, e := range out {
			if k, _, _ := strings.Cut(e, "="); k == key {
				out[i], found = kv, true
			}
		}
		if !found {
			out = append(out, kv)
		}
	}
	return out
}

// assignExecFiles gives p (running sp) the files that came with the
// request, as x names them.
func assignExecFiles(p *libcontainer.Process, sp *specs.Process, x *v1.ExecRequest, files []*os.File) error {
	if sp.Terminal {
		if len(files) != 1 || x.Stdin || x.Stdout || x.Stderr {
			return v1.Errorf(v1.CodeInvalidArgument, "a terminal exec takes one file (the console socket), got %d", len(files))
		}
		p.ConsoleSocket = files[0]
		if cs := sp.ConsoleSize; cs != nil {
			p.ConsoleWidth, p.ConsoleHeight = uint16(cs.Width), uint16(cs.Height)
		}
		return nil
	}
	want := 0
	for _, set := range []bool{x.Stdin, x.Stdout, x.Stderr} {
		if set {
			want++
		}
	}
	if len(files) != want {
		return v1.Errorf(v1.CodeInvalidArgument, "exec names %d stdio files, %d came", want, len(files))
	}
	next := func() *os.File { f := files[0]; files = files[1:]; return f }
	if x.Stdin {
		p.Stdin = next()
	}
	if x.Stdout {
		p.Stdout = next()
	}
	if x.Stderr {
		p.Stderr = next()
	}
	return nil
}

// execProcess converts an exec's process spec. Unlike a container init's,
// capabilities, no_new_privileges and labels are set on the process: the
// loaded container's config holds the init's, and an exec must not depend
// on what a create stored.
func execProcess(sp *specs.Process) (*libcontainer.Process, error) {
	p, err := newProcess(sp)
	if err != nil {
		return nil, err
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	p.AppArmorProfile, p.Label = sp.ApparmorProfile, sp.SelinuxLabel
	if c := sp.Capabilities; c != nil {
		p.Capabilities = &configs.Capabilities{
			Bounding: c.Bounding, Effective: c.Effective, Inheritable: c.Inheritable,
			Permitted: c.Permitted, Ambient: c.Ambient,
		}
	}
	nnp := sp.NoNewPrivileges
	p.NoNewPrivileges = &nnp
	return p, nil
}

// waitExec reaps the process: its exit code, or 128+signal.
func waitExec(p *libcontainer.Process) int {
	ps, _ := p.Wait()
	if ps == nil {
		return 255 // not reaped here: cannot happen for our own child
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// writeResponseFiles is writeResponse with files attached (SCM_RIGHTS).
func writeResponseFiles(conn *net.UnixConn, resp *v1.Response, files ...*os.File) error {
	data, err := encodeResponse(resp)
	if err != nil {
		return err
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second)) // as writeResponse
	n, _, err := conn.WriteMsgUnix(data, unix.UnixRights(fds...), nil)
	if err == nil && n < len(data) {
		_, err = conn.Write(data[n:])
	}
	return err
}

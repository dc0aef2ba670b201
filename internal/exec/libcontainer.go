package exec

import (
	"context"
	"errors"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/pty"
)

// startLibcontainer has the supervisor run cmd in the container
// (OpExecCommand, or OpExec for a supervisor before 1.5):
// libcontainer starts an exec'd process by re-executing the calling binary
// as its init, and the supervisor's binary, sealed once, starts several
// times faster than berthd's would. The supervisor is the process's parent
// and reports its exit; stdio files (or, with a tty, the console socket the
// process sends its pty master to) travel with the request.
func (e *Execer) startLibcontainer(ctx context.Context, t Target, cmd []string, io stdio, tty bool) (*process, error) {
	if e.sup == nil {
		return nil, fmt.Errorf("exec in %s: no supervisor: %w", t.ID, errdefs.ErrUnavailable)
	}
	req := supv1.ExecRequest{Args: cmd, Terminal: tty}
	var files []*os.File
	var consoleParent, consoleChild *os.File
	if tty {
		var err error
		if consoleParent, consoleChild, err = pty.SocketPair(); err != nil {
			return nil, err
		}
		defer consoleParent.Close()
		files = []*os.File{consoleChild}
	} else {
		for _, f := range []struct {
			f   *os.File
			set *bool
		}{{io.stdin, &req.Stdin}, {io.stdout, &req.Stdout}, {io.stderr, &req.Stderr}} {
			if f.f != nil {
				*f.set = true
				files = append(files, f.f)
			}
		}
	}
	sess, err := e.sup.ExecCommand(ctx, t.ID, req, files)
	if errors.Is(err, errdefs.ErrUnimplemented) {
		// A supervisor before 1.5 (one berthd could not upgrade in place)
		// did nothing and takes the whole process, as berthd builds it.
		var sp *specs.Process
		if sp, err = t.process(cmd, tty); err == nil {
			sess, err = e.sup.Exec(ctx, t.ID, supv1.ExecRequest{Process: sp, Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr}, files)
		}
	}
	if consoleChild != nil {
		// The process has its copy (or never will); ours must go so that a
		// receive sees EOF rather than blocking when nothing was sent.
		consoleChild.Close()
	}
	if err != nil {
		return nil, startError(t.ID, err)
	}
	proc := &process{
		kill:    sess.Kill,
		wait:    sess.Wait,
		cleanup: sess.Close,
	}
	if tty {
		if proc.console, err = pty.Receive(consoleParent); err != nil {
			// The process runs without anyone holding its terminal: end it.
			sess.Kill()
			sess.Wait()
			sess.Close()
			return nil, err
		}
	}
	return proc, nil
}

package exec

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/berth-cri/berth/internal/runtimecli"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/proctree"
)

// startOCI runs `<runtime> --root <root> exec --process <file> <id>` without
// --detach: the runtime stays our child until the process ends and exits
// with its code, so the exit is exact without a subreaper.
//
// With a tty, the runtime's stdio is the slave of a pty allocated here, in a
// new session with that pty as controlling terminal: the runtime puts it in
// raw mode, copies between it and the container's own pty, and on SIGWINCH
// (which the kernel sends when the master here is resized) resizes the
// container's pty to match. Resizes thus travel the runtime's own path.
func startOCI(_ context.Context, t Target, cmd []string, io stdio, tty bool) (*process, error) {
	if t.RuntimePath == "" {
		return nil, fmt.Errorf("container %s: oci runtime without a binary path: %w", t.ID, errdefs.ErrInvalidArgument)
	}
	dir, err := os.MkdirTemp("", "berth-exec-")
	if err != nil {
		return nil, fmt.Errorf("exec temp dir: %w", err)
	}
	cleanup := func() { os.RemoveAll(dir) }
	sp, err := t.process(cmd, tty)
	if err != nil {
		cleanup()
		return nil, err
	}
	data, err := json.Marshal(sp)
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("encode process: %w", err)
	}
	procFile, logFile := filepath.Join(dir, "process.json"), filepath.Join(dir, "runtime.log")
	if err := os.WriteFile(procFile, data, 0o600); err != nil {
		cleanup()
		return nil, fmt.Errorf("write process: %w", err)
	}
	args := []string{"--root", t.RuntimeRoot, "--log", logFile, "--log-format", "json", "exec", "--process", procFile}
	if tty {
		args = append(args, "--tty")
	}
	c := exec.Command(t.RuntimePath, append(args, t.ID)...)
	var master, slave *os.File
	if tty {
		if master, slave, err = openPty(); err != nil {
			cleanup()
			return nil, err
		}
		c.Stdin, c.Stdout, c.Stderr = slave, slave, slave
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	} else {
		// Typed nils would make exec.Cmd copy through a goroutine.
		if io.stdin != nil {
			c.Stdin = io.stdin
		}
		if io.stdout != nil {
			c.Stdout = io.stdout
		}
		if io.stderr != nil {
			c.Stderr = io.stderr
		}
	}
	err = c.Start()
	if slave != nil {
		slave.Close()
	}
	if err != nil {
		if master != nil {
			master.Close()
		}
		cleanup()
		return nil, fmt.Errorf("start %s exec: %w", t.RuntimePath, err)
	}
	wait := func() (int, error) {
		err := c.Wait()
		if c.ProcessState == nil {
			return -1, fmt.Errorf("wait for %s exec: %w", t.RuntimePath, err)
		}
		code := exitCode(c.ProcessState)
		// The runtime's own failures are logged at error level; the exec'd
		// process's exit codes are not.
		if msg := runtimecli.LastLogError(logFile); msg != "" {
			return code, ociError(t.ID, msg)
		}
		return code, nil
	}
	// The runtime is our unreaped child until wait returns: its pid cannot
	// be reused meanwhile.
	pid := c.Process.Pid
	return &process{kill: func() { proctree.Kill(pid) }, wait: wait, console: master, cleanup: cleanup}, nil
}

// ociError classifies the runtime's logged failure.
func ociError(id, msg string) error {
	if n := classifyMessage(msg); n != nil {
		return n
	}
	switch {
	case strings.Contains(msg, "does not exist"):
		return fmt.Errorf("container %s: %s: %w", id, msg, errdefs.ErrNotFound)
	case strings.Contains(msg, "stopped") || strings.Contains(msg, "not running"):
		return fmt.Errorf("container %s: %s: %w", id, msg, errdefs.ErrFailedPrecondition)
	}
	return fmt.Errorf("exec in container %s: %s", id, msg)
}

// exitCode is the shell convention: the code, or 128+signal.
func exitCode(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

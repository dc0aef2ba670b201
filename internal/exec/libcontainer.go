package exec

import (
	"errors"
	"fmt"
	"os"

	"github.com/berth-cri/berth/internal/runtimecli"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
)

// startLibcontainer loads the container from its runtime root and runs cmd
// in it. The libcontainer.Container is loaded per call: it is cheap (one
// state.json) and needs no cache invalidation when the container goes away.
func startLibcontainer(t Target, cmd []string, io stdio, tty bool) (*process, error) {
	c, err := libcontainer.Load(t.RuntimeRoot, t.ID)
	if errors.Is(err, libcontainer.ErrNotExist) {
		return nil, fmt.Errorf("container %s has no runtime state: %w", t.ID, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load container %s: %w", t.ID, err)
	}
	if st, err := c.Status(); err == nil && st != libcontainer.Running {
		return nil, fmt.Errorf("container %s is %s: %w", t.ID, st, errdefs.ErrFailedPrecondition)
	}
	p, err := libcontainerProcess(t.Spec.Process, cmd)
	if err != nil {
		return nil, err
	}
	if io.stdin != nil {
		p.Stdin = io.stdin
	}
	if io.stdout != nil {
		p.Stdout = io.stdout
	}
	if io.stderr != nil {
		p.Stderr = io.stderr
	}
	var consoleParent, consoleChild *os.File
	if tty {
		if consoleParent, consoleChild, err = consoleSocketPair(); err != nil {
			return nil, err
		}
		p.ConsoleSocket = consoleChild
		defer consoleParent.Close()
	}
	err = c.Run(p)
	if consoleChild != nil {
		// The child has its copy (or never will); ours must go so that a
		// receive sees EOF rather than blocking when nothing was sent.
		consoleChild.Close()
	}
	if err != nil {
		return nil, startError(t.ID, err)
	}
	pid, _ := p.Pid()
	proc := &process{pid: pid, wait: func() (int, error) { return waitLibcontainer(p) }, cleanup: func() {}}
	if tty {
		if proc.console, err = receiveConsole(consoleParent); err != nil {
			// The process runs without anyone holding its terminal: end it.
			killTree(pid)
			proc.wait()
			return nil, err
		}
	}
	return proc, nil
}

func waitLibcontainer(p *libcontainer.Process) (int, error) {
	ps, err := p.Wait()
	if ps == nil {
		return -1, fmt.Errorf("wait for exec'd process: %w", err)
	}
	return exitCode(ps), nil
}

// exitCode is the shell convention: the code, or 128+signal.
func exitCode(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(unix.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// libcontainerProcess converts the container's process spec into the exec'd
// process. The loaded container's config already holds the spec's
// capabilities, no_new_privileges and labels; they are set here again from
// the spec so that an exec never depends on what a create stored.
func libcontainerProcess(sp *specs.Process, cmd []string) (*libcontainer.Process, error) {
	cwd := sp.Cwd
	if cwd == "" {
		cwd = "/"
	}
	p := &libcontainer.Process{
		Args:            cmd,
		Env:             sp.Env,
		UID:             int(sp.User.UID),
		GID:             int(sp.User.GID),
		Cwd:             cwd,
		AppArmorProfile: sp.ApparmorProfile,
		Label:           sp.SelinuxLabel,
	}
	for _, g := range sp.User.AdditionalGids {
		p.AdditionalGroups = append(p.AdditionalGroups, int(g))
	}
	if c := sp.Capabilities; c != nil {
		p.Capabilities = &configs.Capabilities{
			Bounding: c.Bounding, Effective: c.Effective, Inheritable: c.Inheritable,
			Permitted: c.Permitted, Ambient: c.Ambient,
		}
	}
	nnp := sp.NoNewPrivileges
	p.NoNewPrivileges = &nnp
	for _, rl := range sp.Rlimits {
		typ, ok := runtimecli.RlimitType(rl.Type)
		if !ok {
			return nil, fmt.Errorf("unknown rlimit %q: %w", rl.Type, errdefs.ErrInvalidArgument)
		}
		p.Rlimits = append(p.Rlimits, configs.Rlimit{Type: typ, Hard: rl.Hard, Soft: rl.Soft})
	}
	return p, nil
}

// Package exec runs processes inside existing containers for ExecSync
// (probes, lifecycle hooks) and for the streaming server's exec.
//
// For the libcontainer kind, the supervisor runs the process
// (OpExecCommand: it builds the process from the container's bundle; OpExec
// with the whole process for a supervisor before protocol 1.5): it is the
// supervisor's child, its stdio are berthd's pipes (or a pty whose master
// the process sends to berthd), and its exit comes back on the request's
// connection. An exec never outlives berthd's interest in it: berthd
// closing the connection (a timeout, a client gone, berthd itself gone)
// kills the process tree. For the oci kind, the runtime binary runs as
// `exec` without --detach, stays berthd's child, and exits with the
// process's exit code.
package exec

import (
	"context"
	"errors"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/supervisor/client"
)

// DefaultMaxOutput caps what Sync captures (stdout and stderr together) when
// the caller passes 0: kubelet receives at most 16 MiB per CRI reply.
const DefaultMaxOutput = 16 << 20

// Target is a running container to exec into.
type Target struct {
	ID          string
	Kind        supv1.RuntimeKind // libcontainer | oci
	RuntimePath string            // oci only
	RuntimeRoot string
	// Spec returns the container's spec: exec'd processes get its process
	// user, env, cwd, capabilities, no_new_privileges, AppArmor/SELinux
	// labels and rlimits. It is called only where berthd must build the
	// process itself: for an oci-kind container (its runtime binary takes
	// the process), and for a supervisor older than protocol 1.5. For a
	// libcontainer-kind container the supervisor builds the process from
	// the bundle it holds, so an exec probe decodes no spec in berthd and
	// its request stays small, whatever the container's environment.
	Spec func() (*specs.Spec, error)
}

// process returns the container's process spec with cmd as its command and
// a terminal when tty.
func (t Target) process(cmd []string, tty bool) (*specs.Process, error) {
	var spec *specs.Spec
	var err error
	if t.Spec != nil {
		spec, err = t.Spec()
	}
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", t.ID, err)
	}
	if spec == nil || spec.Process == nil {
		return nil, fmt.Errorf("container %s has no process spec: %w", t.ID, errdefs.ErrFailedPrecondition)
	}
	sp := *spec.Process
	sp.Args, sp.Terminal, sp.ConsoleSize = cmd, tty, nil
	if sp.Cwd == "" {
		sp.Cwd = "/"
	}
	return &sp, nil
}

// Execer runs processes in containers. It is safe for concurrent use and
// keeps no state between calls.
type Execer struct {
	log logrus.FieldLogger
	sup *client.Client // runs libcontainer-kind execs
}

// New returns an Execer logging to log that runs libcontainer-kind execs
// through sup.
func New(log logrus.FieldLogger, sup *client.Client) *Execer {
	if log == nil {
		log = logrus.StandardLogger()
	}
	return &Execer{log: log, sup: sup}
}

// stdio is what an exec'd process gets. A nil file means /dev/null. With a
// tty, the files are ignored and the process gets a pty instead.
type stdio struct {
	stdin, stdout, stderr *os.File
}

// process is a started exec.
type process struct {
	// kill kills the process and everything it started; wait then returns.
	kill func()
	// wait reaps the process and returns its exit code (128+signal for a
	// signal death).
	wait func() (int, error)
	// console is the pty master of a tty exec (owned by the caller).
	console *os.File
	// cleanup releases what the start left behind (temp files); called once
	// after wait.
	cleanup func()
}

// start runs cmd in t with io; see notRunnable for how a command that cannot
// be executed is reported.
func (e *Execer) start(ctx context.Context, t Target, cmd []string, io stdio, tty bool) (*process, error) {
	if len(cmd) == 0 || cmd[0] == "" {
		return nil, fmt.Errorf("exec needs a command: %w", errdefs.ErrInvalidArgument)
	}
	switch t.Kind {
	case supv1.RuntimeLibcontainer, "":
		return e.startLibcontainer(ctx, t, cmd, io, tty)
	case supv1.RuntimeOCI:
		return startOCI(ctx, t, cmd, io, tty)
	}
	return nil, fmt.Errorf("container %s: unknown runtime kind %q: %w", t.ID, t.Kind, errdefs.ErrInvalidArgument)
}

// notRunnable is a start failure caused by the command itself (not found,
// not executable). Exec reports it as an exit code, as a shell would, with
// the runtime's message, not as an RPC error: kubelet turns it into a probe
// failure or FailedPostStartHook event.
type notRunnable struct {
	code int
	msg  string
}

func (n *notRunnable) Error() string { return n.msg }

func asNotRunnable(err error) (*notRunnable, bool) {
	var n *notRunnable
	ok := errors.As(err, &n)
	return n, ok
}

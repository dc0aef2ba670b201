package supervisor

import (
	"context"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// stdio is what a container init gets as fds 0, 1 and 2. A terminal
// container (rec.Terminal) gets none: its init makes a pty and uses the slave.
type stdio struct {
	stdin, stdout, stderr *os.File
}

// runtime is one way of running containers. Calls for one container are
// serialised by the server; calls for different containers run concurrently.
type runtime interface {
	// create makes the container and its init, which waits for start; it
	// returns the init's pid and, for a terminal container, the pty master
	// (non-blocking, close-on-exec; the caller owns it); it fills
	// rec.MemoryCgroup.
	create(ctx context.Context, rec *record, spec *specs.Spec, io stdio) (int, *os.File, error)
	start(ctx context.Context, rec *record) error
	kill(ctx context.Context, rec *record, sig int, all bool) error
	// delete removes the runtime's state (and cgroup); deleting an absent
	// container is not an error.
	delete(ctx context.Context, rec *record) error
	update(ctx context.Context, rec *record, res *specs.LinuxResources) error
	// started reports whether a created container's init already runs the
	// user process (a start that finished while no record was saved).
	started(ctx context.Context, rec *record) (bool, error)
}

package streaming

import (
	"context"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-cri/berth/internal/container"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/exec"
	"github.com/berth-cri/berth/internal/sandbox"
)

// managerLookup is the Lookup over berthd's container and sandbox managers.
type managerLookup struct {
	containers *container.Manager
	sandboxes  *sandbox.Manager
}

// NewLookup returns the Lookup of berthd's containers and sandboxes.
func NewLookup(containers *container.Manager, sandboxes *sandbox.Manager) Lookup {
	return &managerLookup{containers: containers, sandboxes: sandboxes}
}

func (l *managerLookup) running(id string) (*container.Container, error) {
	c, err := l.containers.Get(id)
	if err != nil {
		return nil, err
	}
	if c.State != container.StateRunning {
		return nil, fmt.Errorf("container %s is not running: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	return c, nil
}

func (l *managerLookup) ExecTarget(ctx context.Context, id string) (exec.Target, error) {
	c, err := l.running(id)
	if err != nil {
		return exec.Target{}, err
	}
	// The spec is read only if the exec needs it (see exec.Target.Spec).
	spec := func() (*specs.Spec, error) { return l.containers.Spec(c.ID) }
	return exec.Target{ID: c.ID, Kind: c.RuntimeKind, RuntimePath: c.RuntimePath, RuntimeRoot: c.RuntimeRoot, Spec: spec}, nil
}

func (l *managerLookup) AttachTarget(ctx context.Context, id string) (AttachTarget, error) {
	c, err := l.running(id)
	if err != nil {
		return AttachTarget{}, err
	}
	cfg := c.Config()
	return AttachTarget{ID: c.ID, Stdin: cfg.GetStdin(), StdinOnce: cfg.GetStdinOnce(), TTY: cfg.GetTty()}, nil
}

func (l *managerLookup) SandboxNetNS(ctx context.Context, id string) (string, error) {
	sb, err := l.sandboxes.Get(id)
	if err != nil {
		return "", err
	}
	if sb.State != sandbox.StateReady {
		return "", fmt.Errorf("pod sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	return sb.NetNS, nil
}

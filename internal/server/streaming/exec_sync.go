package streaming

import (
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// ExecSync runs a command to completion: kubelet's exec probes and exec
// lifecycle hooks. timeout 0 is no limit (hooks send 0); a timeout answers
// DeadlineExceeded (errdefs maps context.DeadlineExceeded), which kubelet
// turns into a probe timeout. A command that cannot run is an exit code
// (126/127) with the reason on stderr, not an error.
func (s *Service) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	if req.GetContainerId() == "" {
		return nil, fmt.Errorf("exec sync needs a container id: %w", errdefs.ErrInvalidArgument)
	}
	if len(req.GetCmd()) == 0 || req.GetCmd()[0] == "" {
		return nil, fmt.Errorf("exec sync needs a command: %w", errdefs.ErrInvalidArgument)
	}
	if req.GetTimeout() < 0 {
		return nil, fmt.Errorf("exec sync timeout %d: %w", req.GetTimeout(), errdefs.ErrInvalidArgument)
	}
	t, err := s.lookup.ExecTarget(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	timeout := time.Duration(req.GetTimeout()) * time.Second
	stdout, stderr, code, err := s.execer.Sync(ctx, t, req.GetCmd(), timeout, s.cfg.MaxExecOutput)
	if err != nil {
		return nil, fmt.Errorf("exec sync in %s: %w", req.GetContainerId(), err)
	}
	return &runtimeapi.ExecSyncResponse{Stdout: stdout, Stderr: stderr, ExitCode: code}, nil
}

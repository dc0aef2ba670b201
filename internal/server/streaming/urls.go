package streaming

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Exec returns the URL of a streaming exec session. The container must be
// running now; the session checks again when it starts.
func (s *Service) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if len(req.GetCmd()) == 0 || req.GetCmd()[0] == "" {
		return nil, fmt.Errorf("exec needs a command: %w", errdefs.ErrInvalidArgument)
	}
	srv, err := s.streamServer()
	if err != nil {
		return nil, err
	}
	if req.GetContainerId() != "" {
		if _, err := s.lookup.ExecTarget(ctx, req.GetContainerId()); err != nil {
			return nil, err
		}
	}
	return srv.GetExec(req) // validates the stream flags
}

// Attach returns the URL of a session attached to the container's stdio.
func (s *Service) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	srv, err := s.streamServer()
	if err != nil {
		return nil, err
	}
	if req.GetContainerId() != "" {
		if _, err := s.lookup.AttachTarget(ctx, req.GetContainerId()); err != nil {
			return nil, err
		}
	}
	return srv.GetAttach(req)
}

// PortForward returns the URL of a port-forward session into the sandbox.
func (s *Service) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	srv, err := s.streamServer()
	if err != nil {
		return nil, err
	}
	if req.GetPodSandboxId() != "" {
		if _, err := s.lookup.SandboxNetNS(ctx, req.GetPodSandboxId()); err != nil {
			return nil, err
		}
	}
	for _, p := range req.GetPort() {
		if p <= 0 || p > 65535 {
			return nil, fmt.Errorf("port %d: %w", p, errdefs.ErrInvalidArgument)
		}
	}
	return srv.GetPortForward(req)
}

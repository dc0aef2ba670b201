package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/sandbox"
)

// PodSandboxStatus reports a sandbox; an unknown id is NotFound, which
// kubelet relies on to tell a race from a failure.
func (s *Service) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	sb, err := s.m.Get(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.PodSandboxStatusResponse{Status: Status(sb), Timestamp: time.Now().UnixNano()}
	if s.containers != nil {
		resp.ContainersStatuses = s.containers.PodContainerStatuses(ctx, sb.ID)
	}
	if req.GetVerbose() {
		info, err := verboseInfo(sb)
		if err != nil {
			return nil, err
		}
		resp.Info = info
	}
	return resp, nil
}

// Status is the CRI status of sb.
func Status(sb *sandbox.Sandbox) *runtimeapi.PodSandboxStatus {
	cfg := sb.Config()
	st := &runtimeapi.PodSandboxStatus{
		Id:             sb.ID,
		Metadata:       cfg.GetMetadata(),
		State:          sb.CRIState(),
		CreatedAt:      sb.CreatedAt,
		Labels:         cfg.GetLabels(),
		Annotations:    cfg.GetAnnotations(),
		RuntimeHandler: sb.RuntimeHandler,
		Network:        &runtimeapi.PodSandboxNetworkStatus{},
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{
			// Echo the requested modes: kubelet compares them to decide
			// whether the sandbox still matches the pod.
			Options: sb.NamespaceOptions(),
		}},
	}
	if len(sb.IPs) > 0 && sb.State == sandbox.StateReady {
		st.Network.Ip = sb.IPs[0]
		for _, ip := range sb.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	return st
}

// verboseInfo is what crictl inspectp shows under "info", in containerd's
// spirit: the pause pid, the netns, the handler and the config.
func verboseInfo(sb *sandbox.Sandbox) (map[string]string, error) {
	b, err := json.Marshal(map[string]any{
		"pid":            sb.PausePID,
		"netNamespace":   sb.NetNS,
		"runtimeHandler": sb.Runtime,
		"image":          sb.Image,
		"config":         json.RawMessage(sb.ConfigJSON),
	})
	if err != nil {
		return nil, fmt.Errorf("encode sandbox info: %w", err)
	}
	return map[string]string{"info": string(b)}, nil
}

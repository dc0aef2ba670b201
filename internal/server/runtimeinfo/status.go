package runtimeinfo

import (
	"context"
	"encoding/json"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
)

// Reasons reported in RuntimeReady when it is false.
const (
	ReasonRecovering = "BerthRecovering"
)

// Status reports the runtime and network conditions and every runtime
// handler. It answers before recovery is done, with RuntimeReady=false.
func (s *Service) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	cfg := s.cfg.Get()
	runtimeCond := &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Status: true}
	if !s.ready.Ready() {
		runtimeCond.Status = false
		runtimeCond.Reason = ReasonRecovering
		runtimeCond.Message = "berthd is recovering its state after start"
	}
	netReady, reason, message := s.network.Status()
	netCond := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: netReady, Reason: reason, Message: message}

	resp := &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{runtimeCond, netCond}},
		// The default handler is reported under "" (CRI-CONTRACT.md), then
		// each configured handler under its name.
		RuntimeHandlers: []*runtimeapi.RuntimeHandler{{Name: "", Features: handlerFeatures(cfg.DefaultRuntime)}},
		// What internal/oci implements: Merge and Strict supplemental
		// groups (with ContainerStatus.user), and noexec/nodev/nosuid mount
		// options. Without the first, kubelet refuses Strict pods.
		Features: &runtimeapi.RuntimeFeatures{SupplementalGroupsPolicy: true, MountOptions: true},
	}
	for _, name := range config.HandlerNames(cfg) {
		resp.RuntimeHandlers = append(resp.RuntimeHandlers, &runtimeapi.RuntimeHandler{Name: name, Features: handlerFeatures(name)})
	}
	if req.GetVerbose() {
		b, err := json.Marshal(cfg)
		if err != nil {
			return nil, fmt.Errorf("encode config: %w", err)
		}
		resp.Info = map[string]string{"config": string(b)}
	}
	return resp, nil
}

// handlerFeatures advertises only what works for that handler: recursive
// read-only mounts and user namespaces are not implemented yet, so both are
// false (kubelet then refuses pods needing them instead of running them wrong).
func handlerFeatures(name string) *runtimeapi.RuntimeHandlerFeatures {
	return &runtimeapi.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: false, UserNamespaces: false}
}

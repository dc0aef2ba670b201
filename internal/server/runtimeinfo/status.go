package runtimeinfo

import (
	"context"
	"encoding/json"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	configv1 "github.com/berth-cri/berth/api/config/v1"
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
		RuntimeHandlers: []*runtimeapi.RuntimeHandler{{Name: "", Features: s.handlerFeatures(cfg, cfg.DefaultRuntime)}},
		// What internal/oci implements: Merge and Strict supplemental
		// groups (with ContainerStatus.user), and noexec/nodev/nosuid mount
		// options. Without the first, kubelet refuses Strict pods. A pod
		// user namespace with host network is refused (oci.UserNamespace).
		Features: &runtimeapi.RuntimeFeatures{SupplementalGroupsPolicy: true, MountOptions: true, UserNamespacesHostNetwork: false},
	}
	for _, name := range config.HandlerNames(cfg) {
		resp.RuntimeHandlers = append(resp.RuntimeHandlers, &runtimeapi.RuntimeHandler{Name: name, Features: s.handlerFeatures(cfg, name)})
	}
	if req.GetVerbose() {
		b, err := json.Marshal(cfg)
		if err != nil {
			return nil, fmt.Errorf("encode config: %w", err)
		}
		// What the kernel probes found, with the reason where a feature
		// is missing (`crictl info` shows it).
		k, err := json.Marshal(s.features.kernelInfo(cfg.RootDir))
		if err != nil {
			return nil, fmt.Errorf("encode kernel info: %w", err)
		}
		resp.Info = map[string]string{"config": string(b), "kernel": string(k)}
		// The driver resolved at start ("auto" in the config says little).
		resp.Info["cgroupDriver"] = string(s.cgroupDriver)
		aa, err := json.Marshal(s.apparmor)
		if err != nil {
			return nil, fmt.Errorf("encode apparmor status: %w", err)
		}
		resp.Info["apparmor"] = string(aa)
		if s.policy != nil {
			ip := map[string]string{"path": "", "version": ""}
			if pol := s.policy.Policy(); pol != nil {
				ip["path"], ip["version"] = pol.Path, pol.Version
			}
			b, err := json.Marshal(ip)
			if err != nil {
				return nil, fmt.Errorf("encode image policy: %w", err)
			}
			resp.Info["imagePolicy"] = string(b)
		}
		// Checkpoint/restore: the CRIU found at start and its version, or
		// why CheckpointContainer answers Unimplemented.
		c, err := json.Marshal(s.criu)
		if err != nil {
			return nil, fmt.Errorf("encode criu info: %w", err)
		}
		resp.Info["criu"] = string(c)
	}
	return resp, nil
}

// handlerFeatures advertises only what works for that handler (kubelet then
// refuses pods needing the rest instead of running them wrong): recursive
// read-only mounts where the kernel and the runtime apply them (internal/oci
// passes "rro"), and user namespaces where the kernel id-maps berth's
// filesystems and the runtime makes id-mapped mounts.
func (s *Service) handlerFeatures(cfg *configv1.Config, name string) *runtimeapi.RuntimeHandlerFeatures {
	return &runtimeapi.RuntimeHandlerFeatures{
		RecursiveReadOnlyMounts: s.features.recursiveReadOnly(cfg.Runtimes[name]),
		UserNamespaces:          s.features.userNamespaces(cfg.Runtimes[name], cfg.RootDir),
	}
}

package sandbox

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/store"
)

// State of a sandbox. The machine is: creating -> ready -> notready, and
// creating -> (rolled back, gone). Only ready and notready are ever visible
// through the CRI; a record still "creating" at start-up is the trace of a
// crash mid-RunPodSandbox and is rolled back. The moves are checked by one
// rule (transitions, transition.go).
type State string

const (
	StateCreating State = "creating"
	StateReady    State = "ready"
	StateNotReady State = "notready"
)

// Sandbox is the persisted record of a pod sandbox.
type Sandbox struct {
	ID string `json:"id"`
	// Name is name_namespace_uid_attempt, unique among existing sandboxes.
	Name string `json:"name"`
	// ConfigJSON is the PodSandboxConfig as kubelet sent it (protojson), so
	// labels and annotations come back unaltered.
	ConfigJSON store.RawJSON `json:"config"`
	// RuntimeHandler is the handler as requested ("" = default), echoed in
	// status; Runtime is the configured handler it resolved to.
	RuntimeHandler string `json:"runtime_handler"`
	Runtime        string `json:"runtime"`
	State          State  `json:"state"`
	CreatedAt      int64  `json:"created_at"` // unix nanoseconds
	// NetNS is the pinned network namespace; empty for host network.
	NetNS string `json:"netns,omitempty"`
	// NetworkReady records that CNI ADD succeeded and DEL is still owed.
	NetworkReady bool     `json:"network_ready,omitempty"`
	IPs          []string `json:"ips,omitempty"`
	// Image is the pause image id; its snapshots are held while the sandbox exists.
	Image string `json:"image"`
	// PausePID is the pause process, whose namespaces containers join;
	// PauseStartTime (clock ticks since boot) proves that a process with
	// that pid still is the pause (see checkPause).
	PausePID       int    `json:"pause_pid,omitempty"`
	PauseStartTime uint64 `json:"pause_start_time,omitempty"`
	// Delivered: the RunPodSandbox reply reached a live client. A retry of
	// an undelivered create (kubelet gave up waiting) gets this sandbox back
	// instead of a name conflict.
	Delivered bool `json:"delivered"`

	config *runtimeapi.PodSandboxConfig
}

// configKeys are the fields of a sandbox's record that no longer change
// once it is ready: written once, apart from its status (store.Records.Split).
var configKeys = []string{"id", "name", "config", "runtime_handler", "runtime", "created_at", "image"}

// Config is the pod's CRI config. Callers must not modify it.
func (s *Sandbox) Config() *runtimeapi.PodSandboxConfig { return s.config }

func (s *Sandbox) decode() error {
	s.config = &runtimeapi.PodSandboxConfig{}
	if err := protojson.Unmarshal(s.ConfigJSON, s.config); err != nil {
		return fmt.Errorf("sandbox %s: config: %w", s.ID, err)
	}
	return nil
}

// clone returns a copy safe to hand out while the manager keeps changing
// the original under its lock.
func (s *Sandbox) clone() *Sandbox {
	c := *s
	c.IPs = append([]string(nil), s.IPs...)
	return &c
}

// NamespaceOptions are the requested namespace modes, echoed in status
// (kubelet recreates host-network sandboxes forever otherwise).
func (s *Sandbox) NamespaceOptions() *runtimeapi.NamespaceOption {
	return s.config.GetLinux().GetSecurityContext().GetNamespaceOptions()
}

// HostNetwork reports whether the pod uses the node's network namespace.
func (s *Sandbox) HostNetwork() bool {
	return s.NamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
}

// podName is the name kubelet's metadata reserves: name_namespace_uid_attempt.
func podName(md *runtimeapi.PodSandboxMetadata) string {
	return strings.Join([]string{md.GetName(), md.GetNamespace(), md.GetUid(), fmt.Sprint(md.GetAttempt())}, "_")
}

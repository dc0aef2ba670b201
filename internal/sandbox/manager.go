package sandbox

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/flight"
	"github.com/berth-cri/berth/internal/oci"
	"github.com/berth-cri/berth/internal/store"
)

// Containers is what sandboxes need of the container manager: a pod's
// containers are stopped before, and removed with, their pod.
type Containers interface {
	StopPod(ctx context.Context, sandboxID string) error
	RemovePod(ctx context.Context, sandboxID string) error
}

// NRI relays pod lifecycle events to NRI plugins (internal/nri).
type NRI interface {
	// BlockSync holds off synchronizing a newly connected plugin until
	// unblock is called: held from relaying RunPodSandbox until the pod
	// is listed, so no plugin misses the pod.
	BlockSync() (unblock func())
	// RunPodSandbox fails the create on a plugin's error.
	RunPodSandbox(ctx context.Context, s *Sandbox) error
	// StopPodSandbox and RemovePodSandbox only notify.
	StopPodSandbox(ctx context.Context, s *Sandbox)
	RemovePodSandbox(ctx context.Context, s *Sandbox)
}

// Deps are the parts the sandbox manager uses.
type Deps struct {
	Config     *config.Holder
	Images     Images
	Snapshots  Snapshots
	Network    Network
	Supervisor Supervisor
	// NetNS pins the pods' network namespaces; nil: HostNetNS.
	NetNS NetNS
	// Files makes the pods' shared files; nil: HostFileMaker.
	Files     FileMaker
	Host      oci.Host
	HostFiles HostFiles
	// RootDir holds the records (RootDir/sandboxes); StateDir the netns
	// pins (StateDir/netns) and per-pod files and bundles (StateDir/sandboxes).
	RootDir, StateDir string
	Log               logrus.FieldLogger
	// Records keeps the sandbox records; nil: files under RootDir.
	Records store.Persister[Sandbox]
}

// Manager owns the node's pod sandboxes.
type Manager struct {
	d          Deps
	t          *store.Table[Sandbox]
	inflight   flight.Group[string]
	containers Containers
	nri        NRI // nil: NRI is off
	events     Events
}

// New opens the records; Recover must run before the manager is used.
func New(d Deps) (*Manager, error) {
	t, err := store.OpenTable(filepath.Join(d.RootDir, "sandboxes"), store.TableOptions[Sandbox]{
		Kind:       "pod sandbox",
		ID:         func(s *Sandbox) string { return s.ID },
		Name:       func(s *Sandbox) string { return s.Name },
		Hidden:     func(s *Sandbox) bool { return s.State == StateCreating },
		Clone:      (*Sandbox).clone,
		Delivered:  func(s *Sandbox) *bool { return &s.Delivered },
		Transition: transition,
		Records:    d.Records,
		ConfigKeys: configKeys,
		Settled:    func(s *Sandbox) bool { return s.State != StateCreating },
	})
	if err != nil {
		return nil, err
	}
	if d.HostFiles == (HostFiles{}) {
		d.HostFiles = DefaultHostFiles
	}
	if d.NetNS == nil {
		d.NetNS = HostNetNS{}
	}
	if d.Files == nil {
		d.Files = HostFileMaker{}
	}
	return &Manager{d: d, t: t, events: noEvents{}}, nil
}

// SetContainers wires the container manager (which itself needs sandboxes,
// hence not a constructor argument).
func (m *Manager) SetContainers(c Containers) { m.containers = c }

// SetNRI wires NRI (which needs the manager, hence late); call it before
// Recover.
func (m *Manager) SetNRI(n NRI) { m.nri = n }

func (m *Manager) podDir(id string) string    { return filepath.Join(m.d.StateDir, "sandboxes", id) }
func (m *Manager) netnsDir() string           { return filepath.Join(m.d.StateDir, "netns") }
func (m *Manager) bundleDir(id string) string { return filepath.Join(m.podDir(id), "bundle") }

// Get returns a copy of the sandbox id, which may be a unique prefix of an
// id (crictl passes short ids).
func (m *Manager) Get(id string) (*Sandbox, error) { return m.t.Get(id) }

// Filter selects sandboxes in List; zero fields match everything.
type Filter struct {
	ID     string // exact id or prefix
	State  *State
	Labels map[string]string
}

// IsEmpty says f lets every sandbox through.
func (f Filter) IsEmpty() bool { return f.ID == "" && f.State == nil && len(f.Labels) == 0 }

// List returns copies of the sandboxes matching f, oldest first.
func (m *Manager) List(f Filter) []*Sandbox {
	return m.t.List(func(s *Sandbox) bool {
		return (f.ID == "" || strings.HasPrefix(s.ID, f.ID)) && (f.State == nil || s.State == *f.State) && store.LabelsMatch(s.config.GetLabels(), f.Labels)
	}, func(s *Sandbox) int64 { return s.CreatedAt })
}

// ToState maps a CRI state filter.
func ToState(s runtimeapi.PodSandboxState) State {
	if s == runtimeapi.PodSandboxState_SANDBOX_READY {
		return StateReady
	}
	return StateNotReady
}

// CRIState is the CRI state of s.
func (s *Sandbox) CRIState() runtimeapi.PodSandboxState {
	if s.State == StateReady {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

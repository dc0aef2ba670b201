package sandbox

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/oci"
	"github.com/berth-cri/berth/internal/snapshot"
	"github.com/berth-cri/berth/internal/store"
	"github.com/berth-cri/berth/internal/supervisor/client"
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
	Images     *image.Service
	Snapshots  *snapshot.Store
	Network    *network.Manager
	Supervisor *client.Client
	Host       oci.Host
	HostFiles  HostFiles
	// RootDir holds the records (RootDir/sandboxes); StateDir the netns
	// pins (StateDir/netns) and per-pod files and bundles (StateDir/sandboxes).
	RootDir, StateDir string
	Log               logrus.FieldLogger
}

// Manager owns the node's pod sandboxes.
type Manager struct {
	d          Deps
	records    *store.Records[Sandbox]
	inflight   store.Inflight[string]
	containers Containers
	nri        NRI // nil: NRI is off

	// mu guards the maps; a sandbox's own operations are serialised by its
	// lock in locks, taken before mu and never while holding mu.
	mu    sync.RWMutex
	byID  map[string]*Sandbox
	names map[string]string // name -> id

	locks store.KeyedMutex
}

// New opens the records; Recover must run before the manager is used.
func New(d Deps) (*Manager, error) {
	recs, err := store.Open[Sandbox](filepath.Join(d.RootDir, "sandboxes"))
	if err != nil {
		return nil, err
	}
	if d.HostFiles == (HostFiles{}) {
		d.HostFiles = DefaultHostFiles
	}
	return &Manager{d: d, records: recs, byID: map[string]*Sandbox{}, names: map[string]string{}}, nil
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
func (m *Manager) Get(id string) (*Sandbox, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	return s.clone(), nil
}

// lookup resolves id or a unique prefix. m.mu is held.
func (m *Manager) lookup(id string) (*Sandbox, error) {
	if id == "" {
		return nil, fmt.Errorf("pod sandbox id is empty: %w", errdefs.ErrInvalidArgument)
	}
	if s, ok := m.byID[id]; ok {
		return s, nil
	}
	var found *Sandbox
	for full, s := range m.byID {
		if strings.HasPrefix(full, id) {
			if found != nil {
				return nil, fmt.Errorf("pod sandbox id prefix %q is ambiguous: %w", id, errdefs.ErrInvalidArgument)
			}
			found = s
		}
	}
	if found == nil || found.State == StateCreating {
		return nil, fmt.Errorf("pod sandbox %q: %w", id, errdefs.ErrNotFound)
	}
	return found, nil
}

// Filter selects sandboxes in List; zero fields match everything.
type Filter struct {
	ID     string // exact id or prefix
	State  *State
	Labels map[string]string
}

// List returns copies of the sandboxes matching f, oldest first.
func (m *Manager) List(f Filter) []*Sandbox {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []*Sandbox
	for id, s := range m.byID {
		if s.State == StateCreating || (f.ID != "" && !strings.HasPrefix(id, f.ID)) || (f.State != nil && s.State != *f.State) {
			continue
		}
		if !labelsMatch(s.config.GetLabels(), f.Labels) {
			continue
		}
		out = append(out, s.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt < out[j].CreatedAt })
	return out
}

func labelsMatch(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
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

// put persists s and indexes it. The caller holds s's lock.
func (m *Manager) put(s *Sandbox) error {
	if err := m.records.Put(s.ID, s); err != nil {
		return fmt.Errorf("persist sandbox %s: %w", s.ID, err)
	}
	m.mu.Lock()
	m.byID[s.ID] = s
	m.names[s.Name] = s.ID
	m.mu.Unlock()
	return nil
}

// update changes s under m.mu and persists it. The caller holds s's lock.
func (m *Manager) update(s *Sandbox, change func(*Sandbox)) error {
	m.mu.Lock()
	change(s)
	m.mu.Unlock()
	if err := m.records.Put(s.ID, s); err != nil {
		return fmt.Errorf("persist sandbox %s: %w", s.ID, err)
	}
	return nil
}

// forget drops s from disk and the index. The caller holds s's lock.
func (m *Manager) forget(s *Sandbox) error {
	if err := m.records.Delete(s.ID); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.byID, s.ID)
	if m.names[s.Name] == s.ID {
		delete(m.names, s.Name)
	}
	m.mu.Unlock()
	return nil
}

package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/cdi"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/criu"
	"github.com/berth-cri/berth/internal/flight"
	"github.com/berth-cri/berth/internal/metrics"
	"github.com/berth-cri/berth/internal/oci"
	"github.com/berth-cri/berth/internal/sandbox"
	"github.com/berth-cri/berth/internal/store"
)

// EventKind is a lifecycle event of a container: the kinds of a sandbox's,
// whose pause kubelet's evented PLEG sees as a container too.
type EventKind = sandbox.EventKind

const (
	EventCreated = sandbox.EventCreated
	EventStarted = sandbox.EventStarted
	EventStopped = sandbox.EventStopped
	EventDeleted = sandbox.EventDeleted
)

// Events receives lifecycle events (kubelet's evented PLEG reads them).
// It must not block.
type Events interface {
	ContainerEvent(kind EventKind, c *Container)
}

// NRI relays container lifecycle events to NRI plugins (internal/nri).
// The calls that return an error fail the operation on a plugin's error;
// the others only notify. c is a copy the callee may keep.
type NRI interface {
	// BlockSync holds off synchronizing a newly connected plugin until
	// unblock is called: held by a create until its container is listed,
	// so no plugin misses the container.
	BlockSync() (unblock func())
	// CreateContainer may adjust spec in place before it is written.
	CreateContainer(ctx context.Context, c *Container, spec *specs.Spec) error
	PostCreateContainer(ctx context.Context, c *Container)
	// UndoCreateContainer follows a create that failed after
	// CreateContainer succeeded.
	UndoCreateContainer(ctx context.Context, c *Container)
	StartContainer(ctx context.Context, c *Container) error
	PostStartContainer(ctx context.Context, c *Container)
	// UpdateContainer returns the resources to apply instead of res.
	UpdateContainer(ctx context.Context, c *Container, res *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error)
	PostUpdateContainer(ctx context.Context, c *Container)
	// StopContainer is told once per container, when its exit is recorded.
	StopContainer(ctx context.Context, c *Container)
	RemoveContainer(ctx context.Context, c *Container)
}

// Deps are the parts the container manager uses.
type Deps struct {
	Config     *config.Holder
	Images     Images
	Snapshots  Snapshots
	Sandboxes  Sandboxes
	Supervisor Supervisor
	Host       oci.Host
	// RootDir holds the records (RootDir/containers); StateDir the bundles
	// (StateDir/containers/<id>/bundle).
	RootDir, StateDir string
	// MaxLogLineSize splits longer log lines into partial records.
	MaxLogLineSize int
	Events         Events
	Log            logrus.FieldLogger
	// Metrics counts container starts; nil records nothing.
	Metrics *metrics.Metrics
	// CDI injects CDI devices into specs; nil: New makes one.
	CDI *cdi.Injector
	// Criu is the CRIU found at start (checkpoint and restore).
	Criu criu.Info
	// Records keeps the container records; nil: files under RootDir.
	Records store.Persister[Container]
}

// Manager owns the node's containers.
type Manager struct {
	d        Deps
	t        *store.Table[Container]
	inflight flight.Group[string]
	users    userFiles // images' /etc/passwd and /etc/group

	nri NRI // nil: NRI is off
}

// New opens the records; Recover must run before the manager is used.
func New(d Deps) (*Manager, error) {
	t, err := store.OpenTable(filepath.Join(d.RootDir, "containers"), store.TableOptions[Container]{
		Kind:       "container",
		ID:         func(c *Container) string { return c.ID },
		Name:       func(c *Container) string { return c.Name },
		Hidden:     func(c *Container) bool { return c.State == StateCreating },
		Clone:      (*Container).clone,
		Delivered:  func(c *Container) *bool { return &c.Delivered },
		Transition: transition,
		Records:    d.Records,
		ConfigKeys: configKeys,
		Settled:    func(c *Container) bool { return c.State != StateCreating },
	})
	if err != nil {
		return nil, err
	}
	if d.Events == nil {
		d.Events = noEvents{}
	}
	if d.CDI == nil {
		d.CDI = cdi.New()
	}
	return &Manager{d: d, t: t}, nil
}

type noEvents struct{}

func (noEvents) ContainerEvent(EventKind, *Container) {}

// SetEvents wires the event sink (which needs the manager, hence late).
func (m *Manager) SetEvents(e Events) { m.d.Events = e }

// SetNRI wires NRI (which needs the manager, hence late); call it before
// Recover.
func (m *Manager) SetNRI(n NRI) { m.nri = n }

func (m *Manager) bundleDir(id string) string {
	return filepath.Join(m.d.StateDir, "containers", id, "bundle")
}

// SweepBundles removes the bundle directories of containers not in known
// (a crash between writing a bundle and the container's first record) and
// returns the ids of those removed; a failure is logged with its id.
func (m *Manager) SweepBundles(known map[string]bool) []string {
	dir := filepath.Join(m.d.StateDir, "containers")
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		m.d.Log.WithError(err).Error("list container bundles to sweep")
	}
	var swept []string
	for _, e := range entries {
		if known[e.Name()] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			m.d.Log.WithError(err).WithField("container", e.Name()).Error("remove a container bundle no container owns")
			continue
		}
		swept = append(swept, e.Name())
	}
	return swept
}

// Get returns a copy of container id (or a unique id prefix).
func (m *Manager) Get(id string) (*Container, error) { return m.t.Get(id) }

// Filter selects containers in List; zero fields match everything.
type Filter struct {
	ID        string // id or prefix
	SandboxID string // id or prefix
	State     *State
	Labels    map[string]string
}

// List returns copies of the containers matching f, oldest first.
func (m *Manager) List(f Filter) []*Container {
	return m.t.List(f.matches, func(c *Container) int64 { return c.CreatedAt })
}

// Select calls fn with each container matching f, in no particular order,
// under the table's read lock (store.Table.Select): fn reads the record
// itself, copies what it needs and must not call the manager.
func (m *Manager) Select(f Filter, fn func(*Container)) { m.t.Select(f.matches, fn) }

// IsEmpty says f lets every container through.
func (f Filter) IsEmpty() bool {
	return f.ID == "" && f.SandboxID == "" && f.State == nil && len(f.Labels) == 0
}

func (f Filter) matches(c *Container) bool {
	return (f.ID == "" || strings.HasPrefix(c.ID, f.ID)) && (f.SandboxID == "" || strings.HasPrefix(c.SandboxID, f.SandboxID)) &&
		(f.State == nil || c.State == *f.State) && store.LabelsMatch(c.config.GetLabels(), f.Labels)
}

// FromCRIState maps a CRI state filter.
func FromCRIState(s runtimeapi.ContainerState) State {
	switch s {
	case runtimeapi.ContainerState_CONTAINER_CREATED:
		return StateCreated
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		return StateRunning
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		return StateExited
	}
	return State("unknown")
}

// IDs returns the ids of every known container, for orphan sweeps.
func (m *Manager) IDs() map[string]bool { return m.t.IDs() }

// Spec is the OCI spec container id runs with (its bundle's config.json),
// for processes exec'd into it.
func (m *Manager) Spec(id string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(m.bundleDir(id), "config.json"))
	if err != nil {
		return nil, fmt.Errorf("spec of container %s: %w", id, err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("spec of container %s: %w", id, err)
	}
	return &s, nil
}

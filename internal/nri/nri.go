// Package nri relays pod and container lifecycle events to NRI (Node
// Resource Interface) plugins through github.com/containerd/nri's runtime
// adaptation, applies the spec adjustments plugins make at container
// creation, and carries out the updates and evictions they ask for through
// the container manager.
//
// Plugin failures stay contained: every request to a plugin is bounded by
// the request timeout (a plugin that misses it is disconnected and the
// operation goes on without it), and an error a plugin returns fails only
// the operation it was asked about. Notifications of things that already
// happened (stops, removals, the Post* events) never fail anything.
package nri

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	nrilog "github.com/containerd/nri/pkg/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	configv1 "github.com/berth-cri/berth/api/config/v1"
	"github.com/berth-cri/berth/internal/container"
	"github.com/berth-cri/berth/internal/logctx"
	"github.com/berth-cri/berth/internal/sandbox"
)

// Sandboxes is what NRI needs of the sandbox manager.
type Sandboxes interface {
	Get(id string) (*sandbox.Sandbox, error)
	List(f sandbox.Filter) []*sandbox.Sandbox
}

// Containers is what NRI needs of the container manager.
type Containers interface {
	Get(id string) (*container.Container, error)
	List(f container.Filter) []*container.Container
	Spec(id string) (*specs.Spec, error)
	// ApplyResources updates a container's resources without relaying the
	// update to plugins: it serves the updates plugins ask for themselves.
	ApplyResources(ctx context.Context, id string, res *runtimeapi.LinuxContainerResources) error
	Stop(ctx context.Context, id string, timeout time.Duration) error
}

// Options configure New.
type Options struct {
	Config     configv1.NRI
	Sandboxes  Sandboxes
	Containers Containers
	// InjectCDI adds the named CDI devices to a spec, for plugins that ask
	// for CDI devices; nil refuses such adjustments.
	InjectCDI func(spec *specs.Spec, devices []string) error
	// RuntimeName and RuntimeVersion are told to plugins.
	RuntimeName, RuntimeVersion string
	Log                         logrus.FieldLogger
}

// NRI is berthd's side of NRI. Its methods are the hooks the sandbox and
// container managers call; it is safe for concurrent use.
type NRI struct {
	r       *adaptation.Adaptation
	pods    Sandboxes
	ctrs    Containers
	cdi     func(*specs.Spec, []string) error
	log     logrus.FieldLogger
	plugins *pluginCount

	// mu guards creating: the adjusted specs of containers whose
	// CreateContainer was relayed and whose creation has not finished yet,
	// so PostCreateContainer sees the spec and a failed create is undone
	// towards the plugins that accepted it.
	mu       sync.Mutex
	creating map[string]*specs.Spec
}

// New sets up the adaptation; Start opens it to plugins.
func New(o Options) (*NRI, error) {
	// The adaptation keeps its timeouts and logger in package variables:
	// one NRI per process.
	adaptation.SetPluginRegistrationTimeout(o.Config.PluginRegistrationTimeout.Duration)
	adaptation.SetPluginRequestTimeout(o.Config.PluginRequestTimeout.Duration)
	nrilog.Set(logger{o.Log})
	n := &NRI{
		pods: o.Sandboxes, ctrs: o.Containers, cdi: o.InjectCDI, log: o.Log,
		plugins: &pluginCount{}, creating: map[string]*specs.Spec{},
	}
	r, err := adaptation.New(o.RuntimeName, o.RuntimeVersion, n.synchronize, n.updateFromPlugin,
		adaptation.WithSocketPath(o.Config.SocketPath),
		adaptation.WithPluginPath(o.Config.PluginPath),
		adaptation.WithPluginConfigPath(o.Config.PluginConfigPath),
		adaptation.WithMetrics(n.plugins),
	)
	if err != nil {
		return nil, fmt.Errorf("nri: %w", err)
	}
	n.r = r
	return n, nil
}

// Start launches the pre-installed plugins, synchronizes them with the
// existing pods and containers, and listens for external plugins. The
// managers must have recovered their state first.
func (n *NRI) Start() error {
	if err := n.r.Start(); err != nil {
		return fmt.Errorf("nri: %w", err)
	}
	return nil
}

// Stop closes the socket and disconnects every plugin.
func (n *NRI) Stop() { n.r.Stop() }

// BlockSync keeps a plugin that connects now from being synchronized
// until unblock is called. A create holds it from before its event is
// relayed until its object is listed, so a plugin learns of every object
// either from the synchronization or from the event, never from neither.
func (n *NRI) BlockSync() (unblock func()) {
	b := n.r.BlockPluginSync()
	return b.Unblock
}

// active reports whether any plugin is connected: with none, events are
// not converted and relayed at all.
func (n *NRI) active() bool { return n.plugins.n.Load() > 0 }

// pluginCount learns the number of connected plugins from the
// adaptation's metrics callbacks.
type pluginCount struct{ n atomic.Int64 }

func (*pluginCount) RecordPluginInvocation(string, string, error)      {}
func (*pluginCount) RecordPluginLatency(string, string, time.Duration) {}
func (*pluginCount) RecordPluginAdjustments(string, string, *adaptation.ContainerAdjustment, int, int) {
}
func (p *pluginCount) UpdatePluginCount(count int) { p.n.Store(int64(count)) }

// logger routes the adaptation's log lines to berthd's.
// logger is the NRI library's logger: its lines about a request's relay
// carry the request's fields (the library passes our context on).
type logger struct{ l logrus.FieldLogger }

func (g logger) Debugf(ctx context.Context, f string, a ...any) { logctx.G(ctx, g.l).Debugf(f, a...) }
func (g logger) Infof(ctx context.Context, f string, a ...any)  { logctx.G(ctx, g.l).Infof(f, a...) }
func (g logger) Warnf(ctx context.Context, f string, a ...any)  { logctx.G(ctx, g.l).Warnf(f, a...) }
func (g logger) Errorf(ctx context.Context, f string, a ...any) { logctx.G(ctx, g.l).Errorf(f, a...) }

// The managers' hooks are these methods, and the managers are what NRI uses.
var (
	_ sandbox.NRI   = (*NRI)(nil)
	_ container.NRI = (*NRI)(nil)
	_ Sandboxes     = (*sandbox.Manager)(nil)
	_ Containers    = (*container.Manager)(nil)
)

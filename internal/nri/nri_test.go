package nri

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	configv1 "github.com/berth-cri/berth/api/config/v1"
	"github.com/berth-cri/berth/internal/container"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/sandbox"
	"github.com/berth-cri/berth/internal/testsupport"
)

// fakeManagers stand in for the sandbox and container managers.
type fakeManagers struct {
	mu      sync.Mutex
	pods    []*sandbox.Sandbox
	ctrs    []*container.Container
	applied map[string]*runtimeapi.LinuxContainerResources
}

func (f *fakeManagers) Get(id string) (*sandbox.Sandbox, error) {
	for _, s := range f.pods {
		if s.ID == id {
			return s, nil
		}
	}
	return nil, errdefs.ErrNotFound
}
func (f *fakeManagers) List(sandbox.Filter) []*sandbox.Sandbox { return f.pods }

type fakeContainers struct{ *fakeManagers }

func (f fakeContainers) Get(id string) (*container.Container, error) {
	for _, c := range f.ctrs {
		if c.ID == id {
			return c, nil
		}
	}
	return nil, errdefs.ErrNotFound
}
func (f fakeContainers) List(container.Filter) []*container.Container { return f.ctrs }
func (f fakeContainers) Spec(string) (*specs.Spec, error)             { return nil, errdefs.ErrNotFound }
func (f fakeContainers) Stop(context.Context, string, time.Duration) error {
	return nil
}
func (f fakeContainers) ApplyResources(_ context.Context, id string, res *runtimeapi.LinuxContainerResources) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied[id] = res
	return nil
}

// testPlugin records what it is told and answers as configured.
type testPlugin struct {
	mu        sync.Mutex
	synced    chan struct{}
	syncPods  []string
	syncCtrs  []string
	createErr error // guarded by mu
	sleep     time.Duration
}

func (p *testPlugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	p.mu.Lock()
	for _, s := range pods {
		p.syncPods = append(p.syncPods, s.GetId())
	}
	for _, c := range ctrs {
		p.syncCtrs = append(p.syncCtrs, c.GetId())
	}
	p.mu.Unlock()
	close(p.synced)
	// Give the existing container the CPUs 2-3 right away.
	return []*api.ContainerUpdate{{ContainerId: "old", Linux: &api.LinuxContainerUpdate{Resources: &api.LinuxResources{Cpu: &api.LinuxCPU{Cpus: "2-3"}}}}}, nil
}

func (p *testPlugin) CreateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	if p.sleep > 0 {
		time.Sleep(p.sleep)
	}
	p.mu.Lock()
	err := p.createErr
	p.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	a := &api.ContainerAdjustment{}
	a.AddEnv("SEEN_AS", c.GetName())
	return a, nil, nil
}

func startNRI(t *testing.T, f *fakeManagers, timeout time.Duration) (*NRI, string) {
	t.Helper()
	dir := t.TempDir()
	socket := filepath.Join(dir, "nri.sock")
	n, err := New(Options{
		Config: configv1.NRI{
			Enable: true, SocketPath: socket, PluginPath: filepath.Join(dir, "plugins"), PluginConfigPath: filepath.Join(dir, "conf.d"),
			PluginRegistrationTimeout: configv1.Duration{Duration: 5 * time.Second}, PluginRequestTimeout: configv1.Duration{Duration: timeout},
		},
		Sandboxes: f, Containers: fakeContainers{f}, RuntimeName: "berth", RuntimeVersion: "test", Log: logrus.New(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n, socket
}

func connect(t *testing.T, socket, name, idx string, p *testPlugin) {
	t.Helper()
	p.synced = make(chan struct{})
	s, err := stub.New(p, stub.WithPluginName(name), stub.WithPluginIdx(idx), stub.WithSocketPath(socket))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-p.synced:
	case <-time.After(10 * time.Second):
		t.Fatal("plugin not synchronized")
	}
}

func newFakes() *fakeManagers {
	return &fakeManagers{
		pods:    []*sandbox.Sandbox{{ID: "pod"}},
		ctrs:    []*container.Container{{ID: "old", SandboxID: "pod", State: container.StateRunning}},
		applied: map[string]*runtimeapi.LinuxContainerResources{},
	}
}

// TestPlugins drives the adaptation with real plugins (nri's stub) over
// its socket. One NRI for the whole test: the adaptation keeps its logger
// and timeouts in package variables.
func TestPlugins(t *testing.T) {
	f := newFakes()
	n, socket := startNRI(t, f, time.Second)
	if n.active() {
		t.Fatal("active with no plugin")
	}
	p := &testPlugin{}
	connect(t, socket, "adjust", "00", p)
	testsupport.PollUntil(t, "the plugin to be registered", 10*time.Second, n.active)

	// A connecting plugin learns of what exists, and its updates are
	// carried out through the container manager.
	if !slices.Equal(p.syncPods, []string{"pod"}) || !slices.Equal(p.syncCtrs, []string{"old"}) {
		t.Errorf("synchronized pods %v, containers %v", p.syncPods, p.syncCtrs)
	}
	testsupport.PollUntil(t, "the sync update", 10*time.Second, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.applied["old"].GetCpusetCpus() == "2-3"
	})

	// Its adjustment reaches the spec before it is written.
	create := func() (*specs.Spec, time.Duration, error) {
		spec := &specs.Spec{Process: &specs.Process{Env: []string{"A=1"}}}
		start := time.Now()
		err := n.CreateContainer(context.Background(), &container.Container{ID: "new", SandboxID: "pod", State: container.StateCreating}, spec)
		return spec, time.Since(start), err
	}
	spec, _, err := create()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"A=1", "SEEN_AS="}; !slices.Equal(spec.Process.Env, want) {
		t.Errorf("env %v, want %v", spec.Process.Env, want)
	}
	if n.created("new") == nil {
		t.Error("the adjusted spec was not kept for PostCreateContainer")
	}

	// A plugin sleeping past the request timeout delays a create by the
	// timeout, is dropped, and the other plugin's adjustment still counts.
	connect(t, socket, "slow", "10", &testPlugin{sleep: 5 * time.Second})
	testsupport.PollUntil(t, "the slow plugin to be registered", 10*time.Second, func() bool { return n.plugins.n.Load() == 2 })
	spec, took, err := create()
	if err != nil || took > 3*time.Second {
		t.Fatalf("create with a slow plugin: %v after %v", err, took)
	}
	if want := []string{"A=1", "SEEN_AS="}; !slices.Equal(spec.Process.Env, want) {
		t.Errorf("env with the slow plugin %v, want %v", spec.Process.Env, want)
	}
	testsupport.PollUntil(t, "the slow plugin to be dropped", 10*time.Second, func() bool { return n.plugins.n.Load() == 1 })

	// A plugin's refusal fails the create.
	p.mu.Lock()
	p.createErr = errors.New("no room")
	p.mu.Unlock()
	if _, _, err := create(); err == nil || !strings.Contains(err.Error(), "no room") {
		t.Errorf("refused create: %v", err)
	}
}

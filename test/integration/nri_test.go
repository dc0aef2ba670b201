package integration

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"

	"github.com/berth-cri/berth/test/internal/harness"
)

// envPlugin is a tiny NRI plugin that injects an environment variable
// into every container, optionally after sleeping (a plugin too slow to
// answer), and records the containers it saw stop.
type envPlugin struct {
	value   string
	sleep   time.Duration
	release chan struct{} // closed at cleanup: a sleeping handler returns

	synced   chan struct{}
	syncOnce sync.Once
	mu       sync.Mutex
	stopped  []string
}

func (p *envPlugin) Synchronize(context.Context, []*api.PodSandbox, []*api.Container) ([]*api.ContainerUpdate, error) {
	p.syncOnce.Do(func() { close(p.synced) })
	return nil, nil
}

func (p *envPlugin) CreateContainer(_ context.Context, _ *api.PodSandbox, _ *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	if p.sleep > 0 {
		select {
		case <-time.After(p.sleep):
		case <-p.release:
		}
	}
	a := &api.ContainerAdjustment{}
	a.AddEnv("NRI_INJECTED", p.value)
	return a, nil, nil
}

func (p *envPlugin) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = append(p.stopped, c.GetId())
	return nil, nil
}

func (p *envPlugin) sawStop(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Contains(p.stopped, id)
}

// connectPlugin connects p to berthd's NRI socket as <idx>-<name> and
// waits until berthd has synchronized it.
func connectPlugin(t *testing.T, e *podEnv, name, idx string, p *envPlugin) {
	t.Helper()
	p.synced, p.release = make(chan struct{}), make(chan struct{})
	s, err := stub.New(p, stub.WithPluginName(name), stub.WithPluginIdx(idx),
		stub.WithSocketPath(filepath.Join(e.d.Dir, "nri.sock")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { close(p.release); cancel(); <-done })
	select {
	case <-p.synced:
	case <-done:
		t.Fatalf("plugin %s exited before it was synchronized\n%s", name, e.d.Logs)
	case <-time.After(20 * time.Second):
		t.Fatalf("plugin %s was not synchronized\n%s", name, e.d.Logs)
	}
}

// TestNRIPlugins: an NRI plugin's adjustment reaches the container (its
// output shows the injected variable), the plugin hears of the exit, and a
// plugin that sleeps past the request timeout (2s, the default) delays a
// create by no more than that timeout: berthd drops it and goes on with
// the other plugins' adjustments.
func TestNRIPlugins(t *testing.T) {
	e := newPodEnv(t, "nri")
	inject := &envPlugin{value: "from-plugin"}
	connectPlugin(t, e, "inject", "00", inject)

	output := func(t *testing.T, name string) []string {
		t.Helper()
		id := e.run(t, e.containerConfig(name, "sh", "-c", "echo NRI_INJECTED=$NRI_INJECTED"))
		if st := e.waitExit(t, id); st.ExitCode != 0 {
			t.Fatalf("%s exited %d", name, st.ExitCode)
		}
		harness.WaitFor(t, "the plugin to hear of the exit", 10*time.Second, func() bool { return inject.sawStop(id) })
		return logLines(t, filepath.Join(e.podCfg.LogDirectory, name+".log"))
	}
	want := []string{"stdout NRI_INJECTED=from-plugin"}
	if got := output(t, "env"); !slices.Equal(got, want) {
		t.Fatalf("output %q, want %q", got, want)
	}

	slow := &envPlugin{value: "from-slow-plugin", sleep: time.Minute}
	connectPlugin(t, e, "slow", "10", slow)
	ctx := context.Background()
	start := time.Now()
	id, err := e.rt.CreateContainer(ctx, e.pod, e.containerConfig("slow", "sh", "-c", "echo NRI_INJECTED=$NRI_INJECTED"), e.podCfg)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("create with a slow plugin: %v\n%s", err, e.d.Logs)
	}
	// The 2s request timeout plus an ordinary create, with room for a
	// loaded CI machine; the plugin would hold it for a minute.
	if took > 10*time.Second {
		t.Errorf("CreateContainer took %v with a plugin sleeping past the request timeout", took)
	}
	if err := e.rt.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	e.waitExit(t, id)
	if !e.d.Logs.Contains("closing plugin 10-slow") {
		t.Errorf("berthd did not drop the slow plugin\n%s", e.d.Logs)
	}
	// The slow plugin was dropped: its adjustment is missing, the first
	// plugin's is there.
	if got := logLines(t, filepath.Join(e.podCfg.LogDirectory, "slow.log")); !slices.Equal(got, want) {
		t.Errorf("output with the slow plugin %q, want %q", got, want)
	}
	// And later creates do not wait for it any more.
	start = time.Now()
	if got := output(t, "after"); !slices.Equal(got, want) {
		t.Errorf("output after the slow plugin %q, want %q", got, want)
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("a create after the slow plugin was dropped took %v", took)
	}
}

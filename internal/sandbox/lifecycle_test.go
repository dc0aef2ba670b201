package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/testsupport/fakes"
)

// The tests below drive the sandbox manager through fakes (no root, no
// process): every step of Run, Stop and Remove is failed in turn, and what
// the fakes hold afterwards shows whether the rollback undid everything.

const pauseRef = fakes.PauseRef

// errInjected is the failure the fakes are told to return.
var errInjected = errors.New("injected failure")

type harness struct {
	m       *Manager
	rec     *fakes.Recorder
	images  *fakes.Images
	snaps   *fakes.Snapshots
	sup     *fakes.Supervisor
	net     *fakes.Network
	netns   *fakes.NetNS
	records *fakes.Records[Sandbox]
	nri     *fakeNRI
	conts   *fakeContainers
	events  *lockedEvents
	hosts   HostFiles
	state   string
	set     *fakes.Set
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	f := fakes.NewSet(t)
	h := &harness{
		rec: f.R, images: f.Images, snaps: f.Snapshots, sup: f.Supervisor, net: f.Network, netns: f.NetNS, set: f,
		records: &fakes.Records[Sandbox]{R: f.R}, nri: &fakeNRI{rec: f.R}, conts: &fakeContainers{rec: f.R},
		events: &lockedEvents{}, state: t.TempDir(),
	}
	dir := t.TempDir()
	h.hosts = HostFiles{Hosts: filepath.Join(dir, "hosts"), ResolvConf: filepath.Join(dir, "resolv.conf"), Shm: filepath.Join(dir, "shm")}
	h.m = h.open(t)
	t.Cleanup(func() {
		// End the pause watches: the fake's pauses "exit".
		for id := range h.m.t.IDs() {
			h.sup.Exit(id, 0)
		}
	})
	return h
}

// open makes a manager on the harness's fakes, as berthd does at start.
func (h *harness) open(t *testing.T) *Manager {
	t.Helper()
	m, err := New(Deps{
		Config: h.set.Config, Images: h.images, Snapshots: h.snaps, Network: h.net, Supervisor: h.sup,
		NetNS: h.netns, Files: fakeFiles{h.rec}, HostFiles: h.hosts, RootDir: t.TempDir(), StateDir: h.state, Log: fakes.NullLog(), Records: h.records,
	})
	if err != nil {
		t.Fatal(err)
	}
	m.SetNRI(h.nri)
	m.SetContainers(h.conts)
	m.SetEvents(h.events)
	return m
}

// podConfig is a pod in its own network namespace (hostNetwork: the
// node's) with the host's IPC, so that its files need no mount.
func podConfig(name string, hostNetwork bool) *runtimeapi.PodSandboxConfig {
	ns := &runtimeapi.NamespaceOption{Ipc: runtimeapi.NamespaceMode_NODE}
	if hostNetwork {
		ns.Network = runtimeapi.NamespaceMode_NODE
	}
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: "uid-" + name},
		Linux:    &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: ns}},
	}
}

// usernsPodConfig is a pod in its own user namespace.
func usernsPodConfig(name string) *runtimeapi.PodSandboxConfig {
	cfg := podConfig(name, false)
	m := []*runtimeapi.IDMapping{{HostId: 100000, ContainerId: 0, Length: 65536}}
	cfg.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{
		UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m},
	}
	return cfg
}

// assertGone checks that nothing of sandbox id is left: no record, no
// image hold, rootfs, pause, pod network or netns pin.
func (h *harness) assertGone(t *testing.T) {
	t.Helper()
	if ids := h.records.IDs(); len(ids) != 0 {
		t.Errorf("records left: %v", ids)
	}
	if left := h.set.Leftovers(func(string) bool { return false }); len(left) != 0 {
		t.Errorf("left: %v", left)
	}
	if ids := h.m.t.IDs(); len(ids) != 0 {
		t.Errorf("sandboxes still indexed: %v", ids)
	}
	if dirs, _ := os.ReadDir(filepath.Join(h.state, "sandboxes")); len(dirs) != 0 {
		t.Errorf("pod directories left: %v", dirs)
	}
}

func TestRunRollsBackEveryStep(t *testing.T) {
	for _, tc := range []struct {
		name        string
		hostNetwork bool
		userns      bool // a pod user namespace: the pause makes the netns
		annotations map[string]string
		setup       func(h *harness)
		wantErr     error // default errInjected
	}{
		{name: "pause image absent and its pull fails", setup: func(h *harness) {
			h.images = &fakes.Images{R: h.rec}
			h.m.d.Images = h.images
			h.rec.Fail("Images.Pull", errInjected)
		}},
		{name: "pause image cannot be held", setup: func(h *harness) { h.rec.Fail("Images.Use", errInjected) }},
		{name: "first record", setup: func(h *harness) { h.records.FailOnce(errInjected, func(*Sandbox) bool { return true }) }},
		{name: "network namespace", setup: func(h *harness) { h.rec.Fail("NetNS.New", errInjected) }},
		{name: "record of the network namespace", setup: func(h *harness) {
			h.records.FailOnce(errInjected, func(s *Sandbox) bool { return s.NetNS != "" })
		}},
		{name: "bad bandwidth annotation", wantErr: errdefs.ErrInvalidArgument, annotations: map[string]string{
			"kubernetes.io/ingress-bandwidth": "lots",
		}},
		{name: "pod network", setup: func(h *harness) { h.rec.Fail("Network.Setup", errInjected) }},
		{name: "pause rootfs", setup: func(h *harness) { h.rec.Fail("Snapshots.PrepareRootfs", errInjected) }},
		{name: "pause rootfs mount", setup: func(h *harness) { h.rec.Fail("Snapshots.MountRootfs", errInjected) }},
		{name: "pod files", setup: func(h *harness) { h.rec.Fail("Files.Prepare", errInjected) }},
		{name: "pause create", setup: func(h *harness) { h.rec.Fail("Supervisor.Create", errInjected) }},
		{name: "pause start", setup: func(h *harness) { h.rec.Fail("Supervisor.Start", errInjected) }},
		{name: "pause start, host network", hostNetwork: true, setup: func(h *harness) { h.rec.Fail("Supervisor.Start", errInjected) }},
		{name: "pause ends as it starts", wantErr: errdefs.ErrUnavailable, setup: func(h *harness) { h.sup.Pid = 1 << 30 }},
		{name: "record of the network", setup: func(h *harness) {
			h.records.FailOnce(errInjected, func(s *Sandbox) bool { return s.NetworkReady })
		}},
		{name: "record of the pause", setup: func(h *harness) {
			h.records.FailOnce(errInjected, func(s *Sandbox) bool { return s.PausePID != 0 })
		}},
		{name: "user namespace: netns pin", userns: true, setup: func(h *harness) { h.rec.Fail("NetNS.Pin", errInjected) }},
		{name: "user namespace: record of the pin", userns: true, setup: func(h *harness) {
			h.records.FailOnce(errInjected, func(s *Sandbox) bool { return s.NetNS != "" })
		}},
		{name: "user namespace: pod network", userns: true, setup: func(h *harness) { h.rec.Fail("Network.Setup", errInjected) }},
		// Regression: the annotation is read once the pause runs; read
		// after the pin was recorded, it failed the rollback too (CNI DEL
		// needs the same pod description), leaking the pod for good.
		{name: "user namespace: bad bandwidth annotation", userns: true, wantErr: errdefs.ErrInvalidArgument,
			annotations: map[string]string{"kubernetes.io/ingress-bandwidth": "lots"}},
		{name: "user namespace: record of the network", userns: true, setup: func(h *harness) {
			h.records.FailOnce(errInjected, func(s *Sandbox) bool { return s.NetworkReady })
		}},
		{name: "an NRI plugin refuses", setup: func(h *harness) { h.rec.Fail("NRI.RunPodSandbox", errInjected) }},
		{name: "record of ready", setup: func(h *harness) {
			h.records.FailOnce(errInjected, func(s *Sandbox) bool { return s.State == StateReady })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			cfg := podConfig("p", tc.hostNetwork)
			if tc.userns {
				cfg = usernsPodConfig("p")
			}
			cfg.Annotations = tc.annotations
			if tc.setup != nil {
				tc.setup(h)
			}
			want := tc.wantErr
			if want == nil {
				want = errInjected
			}
			id, err := h.m.Run(context.Background(), cfg, "")
			if !errors.Is(err, want) {
				t.Fatalf("Run = %q, %v; want an error wrapping %v", id, err, want)
			}
			h.assertGone(t)
			if len(h.events.All()) != 0 {
				t.Errorf("events of a failed Run: %v", h.events.All())
			}
			if tc.name == "record of ready" && !h.rec.Called("NRI.RemovePodSandbox") {
				t.Error("NRI plugins that accepted the pod not told of its removal")
			}
		})
	}
}

// TestRunFailedRollback: a rollback that fails leaves the record, still
// creating (hidden from the CRI), for recovery to finish.
func TestRunFailedRollback(t *testing.T) {
	h := newHarness(t)
	h.rec.Fail("Network.Setup", errInjected)
	h.rec.Fail("Network.Teardown", errors.New("teardown fails too"))
	fakes.CheckFailedRollbackKept(t, h.records, errInjected, func() error {
		_, err := h.m.Run(context.Background(), podConfig("p", false), "")
		return err
	}, func(s *Sandbox) bool { return s.State == StateCreating }, func() int { return len(h.m.List(Filter{})) })
}

func TestRunSucceeds(t *testing.T) {
	for _, tc := range []struct {
		name        string
		hostNetwork bool
		pull        bool
	}{
		{"pod network", false, false},
		{"host network", true, false},
		{"pause image pulled first", false, true},
		{"user namespace", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.pull {
				h.images = &fakes.Images{R: h.rec}
				h.images.AddPullable(pauseRef, fakes.NewImage(pauseRef))
				h.m.d.Images = h.images
			}
			cfg := podConfig("p", tc.hostNetwork)
			if tc.name == "user namespace" {
				cfg = usernsPodConfig("p")
			}
			id, err := h.m.Run(context.Background(), cfg, "")
			if err != nil {
				t.Fatal(err)
			}
			s, err := h.m.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			rec := h.records.Get(id)
			if s.State != StateReady || rec.State != StateReady || !rec.Delivered || s.PausePID != os.Getpid() || s.PauseStartTime == 0 {
				t.Errorf("sandbox %+v, record %+v: want ready, delivered, the pause recorded", s, rec)
			}
			if tc.hostNetwork != (len(s.IPs) == 0 && s.NetNS == "" && !s.NetworkReady) {
				t.Errorf("network: netns %q, ready %v, IPs %v", s.NetNS, s.NetworkReady, s.IPs)
			}
			if h.sup.Status(id) != "running" {
				t.Errorf("pause is %q", h.sup.Status(id))
			}
			if got := h.images.Holders(fakes.NewImage(pauseRef).ID.String()); !slices.Equal(got, []string{holder(id)}) {
				t.Errorf("pause image holders %v", got)
			}
			want := []string{fmt.Sprintf("%d %s ready", EventCreated, id), fmt.Sprintf("%d %s ready", EventStarted, id)}
			if fmt.Sprint(h.events.All()) != fmt.Sprint(want) {
				t.Errorf("events %v, want %v", h.events.All(), want)
			}
		})
	}
}

func TestRunValidates(t *testing.T) {
	h := newHarness(t)
	for name, cfg := range map[string]*runtimeapi.PodSandboxConfig{
		"no uid":     {Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns"}},
		"bad userns": {Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"}, Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}}}}},
	} {
		if _, err := h.m.Run(context.Background(), cfg, ""); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	if _, err := h.m.Run(context.Background(), podConfig("p", false), "kata"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("unknown handler: %v, want InvalidArgument", err)
	}
	if calls := h.rec.Calls(); len(calls) != 0 {
		t.Errorf("a refused Run made calls: %v", calls)
	}
}

// TestRunRetried pins the name reservation of RunPodSandbox
// (fakes.CheckRetriedCreate).
func TestRunRetried(t *testing.T) {
	fakes.CheckRetriedCreate(t, func(t *testing.T) fakes.RetryCase[Sandbox] {
		h := newHarness(t)
		return fakes.RetryCase[Sandbox]{
			Rec: h.rec, Records: h.records, Step: "Supervisor.Start ",
			Create: func(ctx context.Context) (string, error) {
				return h.m.Run(ctx, podConfig("p", false), "")
			},
			Settled:   func(s *Sandbox) bool { return s.State == StateReady },
			Delivered: func(s *Sandbox) bool { return s.Delivered },
		}
	})
}

// run makes a ready sandbox and forgets the calls that made it.
func (h *harness) run(t *testing.T, hostNetwork bool) string {
	t.Helper()
	id, err := h.m.Run(context.Background(), podConfig("p", hostNetwork), "")
	if err != nil {
		t.Fatal(err)
	}
	h.rec.Reset()
	h.events.Reset()
	return id
}

// stopSteps are the steps of Stop that can fail; each leaves the sandbox
// for a retried Stop to finish.
var stopSteps = []stopStep{
	{"pause state", func(h *harness) { h.rec.Fail("Supervisor.State", errInjected) }, false},
	{"pause kill", func(h *harness) { h.rec.Fail("Supervisor.Kill", errInjected) }, false},
	{"pause wait", func(h *harness) { h.rec.Fail("Supervisor.Wait", errInjected) }, false},
	{"network teardown", func(h *harness) { h.rec.Fail("Network.Teardown", errInjected) }, false},
	{"record of the network", func(h *harness) { h.records.FailOnce(errInjected, func(s *Sandbox) bool { return !s.NetworkReady }) }, false},
	{"netns removal", func(h *harness) { h.rec.Fail("NetNS.Remove", errInjected) }, false},
	// A failed write leaves the state changed in memory (Table.Update), so
	// the retry finds the sandbox not ready and writes nothing: the record
	// on disk says ready until recovery finds the pause gone.
	{"record of not ready", func(h *harness) {
		h.records.FailOnce(errInjected, func(s *Sandbox) bool { return s.State == StateNotReady })
	}, true},
}

// failThenRetry makes a ready sandbox, fails op on it at step, checks the
// sandbox is still there, and retries op without the failure.
func (h *harness) failThenRetry(t *testing.T, step stopStep, op func(context.Context, string) error) string {
	t.Helper()
	id := h.run(t, false)
	step.setup(h)
	if err := op(context.Background(), id); !errors.Is(err, errInjected) {
		t.Fatalf("%v, want the injected error", err)
	}
	if _, err := h.m.Get(id); err != nil {
		t.Errorf("a sandbox whose stop or removal failed is gone: %v", err)
	}
	h.rec.Clear()
	h.records.FailPut = nil
	if err := op(context.Background(), id); err != nil {
		t.Fatalf("retried: %v", err)
	}
	return id
}

type stopStep struct {
	name        string
	setup       func(h *harness)
	staleRecord bool
}

func TestStop(t *testing.T) {
	for _, tc := range stopSteps {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			id := h.failThenRetry(t, tc, h.m.Stop)
			h.assertStopped(t, id, tc.staleRecord)
		})
	}
	t.Run("twice", func(t *testing.T) {
		h := newHarness(t)
		id := h.run(t, false)
		for range 2 {
			if err := h.m.Stop(context.Background(), id); err != nil {
				t.Fatal(err)
			}
		}
		h.assertStopped(t, id, false)
		if n := h.rec.Count("Network.Teardown "); n != 1 {
			t.Errorf("%d CNI DELs, want 1", n)
		}
		if n := h.rec.Count("NRI.StopPodSandbox "); n != 1 {
			t.Errorf("NRI told %d times of the stop, want once", n)
		}
	})
	t.Run("unknown sandbox", func(t *testing.T) {
		h := newHarness(t)
		if err := h.m.Stop(context.Background(), "nothere"); err != nil {
			t.Errorf("Stop of an unknown sandbox: %v", err)
		}
	})
	t.Run("containers fail to stop", func(t *testing.T) {
		h := newHarness(t)
		id := h.run(t, false)
		h.rec.Fail("Containers.StopPod", errInjected)
		if err := h.m.Stop(context.Background(), id); !errors.Is(err, errInjected) {
			t.Fatalf("Stop: %v", err)
		}
		if s, _ := h.m.Get(id); s.State != StateReady || h.sup.Status(id) != "running" {
			t.Errorf("sandbox %s, pause %s: want untouched", s.State, h.sup.Status(id))
		}
	})
}

// assertStopped checks a stopped sandbox: not ready, its pause dead, its
// network given back; its record, rootfs and image hold kept.
// staleRecord: the record may still say ready (see stopSteps).
func (h *harness) assertStopped(t *testing.T, id string, staleRecord bool) {
	t.Helper()
	s, err := h.m.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if rec := h.records.Get(id); s.State != StateNotReady || rec.NetworkReady || (rec.State != StateNotReady && !staleRecord) {
		t.Errorf("sandbox %s, record %+v: want not ready, network released", s.State, rec)
	}
	if st := h.sup.Status(id); st != "stopped" {
		t.Errorf("pause is %q", st)
	}
	if len(h.net.Pods()) != 0 || len(h.netns.Pins()) != 0 {
		t.Errorf("network left: pods %v, pins %v", h.net.Pods(), h.netns.Pins())
	}
	if len(h.snaps.Keys()) != 1 || len(h.images.Held()) != 1 {
		t.Errorf("a stopped sandbox lost its rootfs %v or image %v", h.snaps.Keys(), h.images.Held())
	}
}

func TestRemove(t *testing.T) {
	steps := append(slices.Clone(stopSteps), []stopStep{
		{"pause delete", func(h *harness) { h.rec.Fail("Supervisor.Delete", errInjected) }, false},
		{"rootfs removal", func(h *harness) { h.rec.Fail("Snapshots.RemoveRootfs", errInjected) }, false},
		{"pod files removal", func(h *harness) { h.rec.Fail("Files.Cleanup", errInjected) }, false},
		{"record removal", func(h *harness) { h.rec.Fail("Records.Delete", errInjected) }, false},
	}...)
	for _, tc := range steps {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			id := h.failThenRetry(t, tc, h.m.Remove)
			h.assertGone(t)
			if ev := h.events.All(); len(ev) == 0 || ev[len(ev)-1] != fmt.Sprintf("%d %s notready", EventDeleted, id) {
				t.Errorf("events %v, want the deletion last", ev)
			}
			if !h.rec.Called("NRI.RemovePodSandbox " + id) {
				t.Error("NRI not told of the removal")
			}
		})
	}
	t.Run("containers fail to be removed", func(t *testing.T) {
		h := newHarness(t)
		id := h.run(t, false)
		h.rec.Fail("Containers.RemovePod", errInjected)
		if err := h.m.Remove(context.Background(), id); !errors.Is(err, errInjected) {
			t.Fatalf("Remove: %v", err)
		}
		if _, err := h.m.Get(id); err != nil {
			t.Errorf("sandbox gone though its containers stayed: %v", err)
		}
	})
	t.Run("unknown sandbox", func(t *testing.T) {
		h := newHarness(t)
		if err := h.m.Remove(context.Background(), "nothere"); err != nil {
			t.Errorf("Remove of an unknown sandbox: %v", err)
		}
	})
}

type fakeNRI struct{ rec *fakes.Recorder }

func (n *fakeNRI) BlockSync() func() { return func() {} }
func (n *fakeNRI) RunPodSandbox(ctx context.Context, s *Sandbox) error {
	return n.rec.Call("NRI.RunPodSandbox", s.ID)
}
func (n *fakeNRI) StopPodSandbox(ctx context.Context, s *Sandbox) {
	n.rec.Call("NRI.StopPodSandbox", s.ID)
}
func (n *fakeNRI) RemovePodSandbox(ctx context.Context, s *Sandbox) {
	n.rec.Call("NRI.RemovePodSandbox", s.ID)
}

type fakeContainers struct{ rec *fakes.Recorder }

func (c *fakeContainers) StopPod(ctx context.Context, id string) error {
	return c.rec.Call("Containers.StopPod", id)
}
func (c *fakeContainers) RemovePod(ctx context.Context, id string) error {
	return c.rec.Call("Containers.RemovePod", id)
}

// TestTransitions pins the state machine: a move added or dropped is a
// decision to make here too.
func TestTransitions(t *testing.T) {
	want := []string{"creating -> notready", "creating -> ready", "ready -> notready"}
	if got := transitions.Moves(); !slices.Equal(got, want) {
		t.Errorf("moves %q, want %q", got, want)
	}
}

// TestTransitionRefusedUpdate: the record table applies the rule to every
// update: a stopped sandbox cannot be made ready again.
func TestTransitionRefusedUpdate(t *testing.T) {
	h := newHarness(t)
	id := h.run(t, true)
	if err := h.m.Stop(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	s := h.m.t.Current(id)
	if err := h.m.t.Update(s, func(s *Sandbox) { s.State = StateReady }); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("notready -> ready: %v, want FailedPrecondition", err)
	}
	if got, _ := h.m.Get(id); got.State != StateNotReady || h.records.Get(id).State != StateNotReady {
		t.Errorf("sandbox %s after a refused update", got.State)
	}
}

// fakeFiles makes a pod's directory without mounting its /dev/shm.
type fakeFiles struct{ rec *fakes.Recorder }

func (f fakeFiles) Prepare(dir string, cfg *runtimeapi.PodSandboxConfig, host HostFiles) (Files, error) {
	if err := f.rec.Call("Files.Prepare", filepath.Base(dir)); err != nil {
		return Files{}, err
	}
	return Files{Hostname: filepath.Join(dir, "hostname"), Shm: filepath.Join(dir, "shm")}, os.MkdirAll(dir, 0o711)
}

func (f fakeFiles) Cleanup(dir string) error {
	if err := f.rec.Call("Files.Cleanup", filepath.Base(dir)); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// lockedEvents keeps the events sent (pause ends come from the watches).
type lockedEvents struct{ fakes.Events }

func (r *lockedEvents) SandboxEvent(kind EventKind, s *Sandbox) {
	r.Add("%d %s %s", kind, s.ID, s.State)
}

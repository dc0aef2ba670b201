package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/sandbox"
	"github.com/berth-cri/berth/internal/testsupport/fakes"
)

// The tests below drive the container manager through fakes (no root, no
// process), its pod made by a sandbox manager on the same fakes: every
// step of Create, Start, Stop and Remove is failed in turn, and what the
// fakes hold afterwards shows whether the rollback undid everything.

const (
	appRef = "app:test"
	volRef = "data:test"
)

var errInjected = errors.New("injected failure")

// errAny stands for an error the fakes did not inject (from a real part).
var errAny = errors.New("any error")

type harness struct {
	m       *Manager
	sb      *sandbox.Manager
	cfg     *config.Holder
	rec     *fakes.Recorder
	images  *fakes.Images
	snaps   *fakes.Snapshots
	sup     *fakes.Supervisor
	records *fakes.Records[Container]
	nri     *fakeNRI
	events  *recordedEvents
	root    string
	state   string
	pod     string // the ready sandbox containers are made in
	set     *fakes.Set
	// endPause, with withOwnPause, ends the process the pod's pause is.
	endPause func()
}

// withOwnPause makes the pod's pause (and every process the fake
// supervisor starts) a real child the test can end, not the test process.
func withOwnPause(t *testing.T) func(*harness) {
	return func(h *harness) {
		cmd := exec.Command("sleep", "600")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var once sync.Once
		h.endPause = func() {
			once.Do(func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			})
		}
		t.Cleanup(h.endPause)
		h.sup.Pid = cmd.Process.Pid
	}
}

func newHarness(t *testing.T, opts ...func(*harness)) *harness {
	t.Helper()
	f := fakes.NewSet(t)
	h := &harness{
		rec: f.R, images: f.Images, snaps: f.Snapshots, sup: f.Supervisor, set: f, cfg: f.Config,
		records: &fakes.Records[Container]{R: f.R}, nri: &fakeNRI{rec: f.R},
		events: &recordedEvents{}, root: t.TempDir(), state: t.TempDir(),
	}
	for _, ref := range []string{appRef, volRef} {
		h.images.Add(ref, fakes.NewImage(ref))
	}
	for _, o := range opts {
		o(h)
	}
	var err error
	h.sb, err = sandbox.New(sandbox.Deps{
		Config: h.cfg, Images: h.images, Snapshots: h.snaps, Network: f.Network, Supervisor: h.sup, NetNS: f.NetNS,
		RootDir: h.root, StateDir: h.state, Log: fakes.NullLog(),
		Records: &fakes.Records[sandbox.Sandbox]{R: f.R},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.pod, err = h.sb.Run(context.Background(), podConfig(), "")
	if err != nil {
		t.Fatal(err)
	}
	h.m = h.open(t)
	h.rec.Reset()
	t.Cleanup(func() {
		// End the watches: every process the fake "runs" exits.
		for id := range h.m.IDs() {
			h.sup.Exit(id, 0)
		}
		h.sup.Exit(h.pod, 0)
	})
	return h
}

// open makes a manager on the harness's fakes, as berthd does at start.
func (h *harness) open(t *testing.T) *Manager {
	t.Helper()
	m, err := New(Deps{
		Config: h.cfg, Images: h.images, Snapshots: h.snaps, Sandboxes: h.sb, Supervisor: h.sup,
		RootDir: h.root, StateDir: h.state, Log: fakes.NullLog(), Records: h.records,
	})
	if err != nil {
		t.Fatal(err)
	}
	m.SetNRI(h.nri)
	m.SetEvents(h.events)
	return m
}

func podConfig() *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "pod", Namespace: "default", Uid: "uid"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE},
		}},
	}
}

func containerConfig(name string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: appRef},
		Linux:    &runtimeapi.LinuxContainerConfig{},
	}
}

// create makes a created container and forgets the calls that made it.
func (h *harness) create(t *testing.T, name string) string {
	t.Helper()
	id, err := h.m.Create(context.Background(), h.pod, containerConfig(name), podConfig())
	if err != nil {
		t.Fatal(err)
	}
	h.rec.Reset()
	h.events.Reset()
	return id
}

// start makes a running container.
func (h *harness) start(t *testing.T, name string) string {
	t.Helper()
	id := h.create(t, name)
	if err := h.m.Start(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	h.rec.Reset()
	h.events.Reset()
	return id
}

// assertNoContainers checks that nothing of any container is left: no
// record, image hold, rootfs or volume snapshot, supervisor state or bundle.
func (h *harness) assertNoContainers(t *testing.T) {
	t.Helper()
	if ids := h.records.IDs(); len(ids) != 0 {
		t.Errorf("records left: %v", ids)
	}
	if left := h.set.Leftovers(func(id string) bool { return id == h.pod }); len(left) != 0 {
		t.Errorf("left: %v", left)
	}
	if ids := h.m.IDs(); len(ids) != 0 {
		t.Errorf("containers still indexed: %v", ids)
	}
	if dirs, _ := os.ReadDir(filepath.Join(h.state, "containers")); len(dirs) != 0 {
		t.Errorf("bundles left: %v", dirs)
	}
}

func TestCreateRollsBackEveryStep(t *testing.T) {
	for _, tc := range []struct {
		name    string
		config  func(c *runtimeapi.ContainerConfig)
		setup   func(h *harness)
		wantErr error // default errInjected
		// The create had begun (its first record on the way): it is
		// rolled back, and NRI told to undo it.
		rolledBack bool
		ownPause   bool // the pod's pause is a real process the test can end
	}{
		{name: "image absent", wantErr: errdefs.ErrNotFound, config: func(c *runtimeapi.ContainerConfig) { c.Image.Image = "absent:1" }},
		{name: "image cannot be held", setup: func(h *harness) { h.rec.Fail("Images.Use", errInjected) }},
		{name: "image policy refuses", setup: func(h *harness) { h.rec.Fail("Images.CheckPolicy", errInjected) }},
		{name: "image volume's policy refuses", config: withVolume, setup: func(h *harness) {
			h.rec.FailIf("Images.CheckPolicy", errInjected, func(args []string) bool { return args[0] == fakes.NewImage(volRef).ID.String() })
		}},
		{name: "bad request", wantErr: errdefs.ErrInvalidArgument, config: func(c *runtimeapi.ContainerConfig) { c.LogPath = "relative.log" }},
		{name: "the pod's handler is gone", rolledBack: true, wantErr: errdefs.ErrInvalidArgument, setup: func(h *harness) {
			c := *h.cfg.Get()
			c.DefaultRuntime = "gone"
			h.cfg.Set(&c)
		}},
		{name: "first record", rolledBack: true, setup: func(h *harness) { h.records.FailOnce(errInjected, func(*Container) bool { return true }) }},
		{name: "rootfs", rolledBack: true, setup: func(h *harness) { h.rec.Fail("Snapshots.PrepareRootfs", errInjected) }},
		{name: "rootfs mount", rolledBack: true, setup: func(h *harness) { h.rec.Fail("Snapshots.MountRootfs", errInjected) }},
		{name: "image volume's image", rolledBack: true, config: withVolume, setup: func(h *harness) {
			h.rec.FailIf("Images.Use", errInjected, func(args []string) bool { return args[0] == volRef })
		}},
		{name: "image volume absent", rolledBack: true, config: withVolume, wantErr: errdefs.ErrNotFound, setup: func(h *harness) {
			h.rec.FailIf("Images.Use", fmt.Errorf("gone: %w", errdefs.ErrNotFound), func(args []string) bool { return args[0] == volRef })
		}},
		{name: "image volume snapshot", rolledBack: true, config: withVolume, setup: func(h *harness) { h.rec.Fail("Snapshots.PrepareReadOnly", errInjected) }},
		{name: "image volume mount", rolledBack: true, config: withVolume, setup: func(h *harness) { h.rec.Fail("Snapshots.MountReadOnly", errInjected) }},
		{name: "target container absent", rolledBack: true, wantErr: errdefs.ErrNotFound, config: func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
				Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "nothere"}}
		}},
		{name: "CDI device unknown", rolledBack: true, wantErr: errAny, config: func(c *runtimeapi.ContainerConfig) {
			c.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.example/gpu=none"}}
		}},
		{name: "an NRI plugin refuses", rolledBack: true, setup: func(h *harness) { h.rec.Fail("NRI.CreateContainer", errInjected) }},
		{name: "supervisor unreachable", rolledBack: true, setup: func(h *harness) { h.rec.Fail("Supervisor.CreateWhenReady", errInjected) }},
		{name: "supervisor unreachable, rootfs fails too", rolledBack: true, setup: func(h *harness) {
			h.rec.Fail("Supervisor.CreateWhenReady", errors.New("unreachable"))
			h.rec.Fail("Snapshots.PrepareRootfs", errInjected)
		}},
		{name: "supervisor create", rolledBack: true, setup: func(h *harness) {
			h.rec.FailIf("Supervisor.Create", errInjected, func(args []string) bool { return args[0] != h.pod })
		}},
		{name: "bundle cannot be written", rolledBack: true, wantErr: errAny, setup: func(h *harness) {
			// A file where the container's bundle directory goes.
			h.rec.OnCall = func(call string) {
				if id, ok := strings.CutPrefix(call, "Snapshots.MountRootfs "); ok {
					dir := filepath.Join(h.state, "containers", id)
					if err := os.MkdirAll(dir, 0o700); err != nil {
						panic(err)
					}
					if err := os.WriteFile(filepath.Join(dir, "bundle"), nil, 0o600); err != nil {
						panic(err)
					}
				}
			}
		}},
		{name: "the pause ends while the supervisor creates", ownPause: true, rolledBack: true, wantErr: errdefs.ErrFailedPrecondition, setup: func(h *harness) {
			// The spec named the pause's namespaces by pid: a create
			// that outlived the pause cannot know what it joined.
			h.rec.OnCall = func(call string) {
				if strings.HasPrefix(call, "Supervisor.Create ") && !strings.Contains(call, h.pod) {
					h.endPause()
				}
			}
		}},
		{name: "record of created", rolledBack: true, setup: func(h *harness) {
			h.records.FailOnce(errInjected, func(c *Container) bool { return c.State == StateCreated })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []func(*harness)
			if tc.ownPause {
				opts = append(opts, withOwnPause(t))
			}
			h := newHarness(t, opts...)
			cfg := containerConfig("c")
			if tc.config != nil {
				tc.config(cfg)
			}
			if tc.setup != nil {
				tc.setup(h)
			}
			want := tc.wantErr
			if want == nil {
				want = errInjected
			}
			id, err := h.m.Create(context.Background(), h.pod, cfg, podConfig())
			if (want == errAny && err == nil) || (want != errAny && !errors.Is(err, want)) {
				t.Fatalf("Create = %q, %v; want an error wrapping %v", id, err, want)
			}
			h.assertNoContainers(t)
			if len(h.events.All()) != 0 {
				t.Errorf("events of a failed Create: %v", h.events.All())
			}
			if tc.rolledBack != h.rec.Called("NRI.UndoCreateContainer") {
				t.Errorf("NRI told to undo the create: %v, want %v", !tc.rolledBack, tc.rolledBack)
			}
		})
	}
}

func withVolume(c *runtimeapi.ContainerConfig) {
	c.Mounts = append(c.Mounts, &runtimeapi.Mount{ContainerPath: "/data", Readonly: true, Image: &runtimeapi.ImageSpec{Image: volRef}})
}

// TestCreateWithUserFilesKnown: the second container of an image has its
// bundle written before the supervisor is asked (the image's user files are
// kept from the first); a failure there rolls back as well.
func TestCreateWithUserFilesKnown(t *testing.T) {
	h := newHarness(t)
	h.m.users.keep(fakes.NewImage(appRef).ID.String(), map[string][]byte{"/etc/passwd": []byte("root:x:0:0::/:/bin/sh\n"), "/etc/group": []byte("root:x:0:\n")})
	h.rec.Fail("NRI.CreateContainer", errInjected)
	if _, err := h.m.Create(context.Background(), h.pod, containerConfig("c"), podConfig()); !errors.Is(err, errInjected) {
		t.Fatalf("Create: %v", err)
	}
	if h.rec.Called("Records.Put") {
		t.Error("a record was written before the bundle failed")
	}
	h.assertNoContainers(t)
	h.rec.Clear()
	id, err := h.m.Create(context.Background(), h.pod, containerConfig("c"), podConfig())
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := h.m.Get(id); c.State != StateCreated {
		t.Errorf("container is %s", c.State)
	}
}

func TestCreateFailedRollback(t *testing.T) {
	h := newHarness(t)
	h.rec.FailIf("Supervisor.Create", errInjected, func(args []string) bool { return args[0] != h.pod })
	h.rec.Fail("Snapshots.RemoveRootfs", errors.New("removal fails too"))
	fakes.CheckFailedRollbackKept(t, h.records, errInjected, func() error {
		_, err := h.m.Create(context.Background(), h.pod, containerConfig("c"), podConfig())
		return err
	}, func(c *Container) bool { return c.State == StateCreating }, func() int { return len(h.m.List(Filter{})) })
}

func TestCreateValidates(t *testing.T) {
	h := newHarness(t)
	for name, tc := range map[string]struct {
		pod  string
		cfg  func(c *runtimeapi.ContainerConfig)
		want error
	}{
		"no name":                        {cfg: func(c *runtimeapi.ContainerConfig) { c.Metadata.Name = "" }, want: errdefs.ErrInvalidArgument},
		"no image":                       {cfg: func(c *runtimeapi.ContainerConfig) { c.Image.Image = "" }, want: errdefs.ErrInvalidArgument},
		"bad label":                      {cfg: func(c *runtimeapi.ContainerConfig) { c.Labels = map[string]string{"a": strings.Repeat("x", 1<<20)} }, want: errdefs.ErrInvalidArgument},
		"unknown pod":                    {pod: "nothere", want: errdefs.ErrNotFound},
		"checkpoint image, restores off": {cfg: func(c *runtimeapi.ContainerConfig) { c.Image.Image = "checkpoint:1" }, want: errdefs.ErrFailedPrecondition},
	} {
		img := fakes.NewImage("checkpoint:1")
		img.Annotations = map[string]string{annotationCRIOCheckpoint: "c"}
		h.images.Add("checkpoint:1", img)
		cfg := containerConfig("c")
		if tc.cfg != nil {
			tc.cfg(cfg)
		}
		pod := h.pod
		if tc.pod != "" {
			pod = tc.pod
		}
		if _, err := h.m.Create(context.Background(), pod, cfg, podConfig()); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if err := h.sb.Stop(context.Background(), h.pod); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Create(context.Background(), h.pod, containerConfig("c"), podConfig()); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("create in a stopped pod: %v, want FailedPrecondition", err)
	}
	h.assertNoContainers(t)
}

func TestCreateSucceeds(t *testing.T) {
	h := newHarness(t)
	cfg := containerConfig("c")
	withVolume(cfg)
	id, err := h.m.Create(context.Background(), h.pod, cfg, podConfig())
	c, gerr := h.m.Get(id)
	if err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	rec := h.records.Get(id)
	if c.State != StateCreated || rec.State != StateCreated || !rec.Delivered || c.SandboxID != h.pod || c.ImageName != appRef {
		t.Errorf("container %+v, record %+v", c, rec)
	}
	if h.sup.Status(id) != "created" {
		t.Errorf("supervisor: %q", h.sup.Status(id))
	}
	if _, err := os.Stat(filepath.Join(h.m.bundleDir(id), "config.json")); err != nil {
		t.Errorf("bundle: %v", err)
	}
	app, vol := fakes.NewImage(appRef).ID.String(), fakes.NewImage(volRef).ID.String()
	if !slices.Equal(h.images.Holders(app), []string{holder(id)}) || !slices.Equal(h.images.Holders(vol), []string{volumeHolder(id, 0)}) {
		t.Errorf("image holders %v", h.images.Held())
	}
	if want := []string{fmt.Sprintf("%d %s created", EventCreated, id)}; fmt.Sprint(h.events.All()) != fmt.Sprint(want) {
		t.Errorf("events %v, want %v", h.events.All(), want)
	}
	if !h.rec.Called("NRI.PostCreateContainer " + id) {
		t.Error("NRI not told of the create")
	}
	if err := h.m.Remove(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	h.assertNoContainers(t)
}

// TestCreateRetried pins the name reservation of CreateContainer
// (fakes.CheckRetriedCreate).
func TestCreateRetried(t *testing.T) {
	fakes.CheckRetriedCreate(t, func(t *testing.T) fakes.RetryCase[Container] {
		h := newHarness(t)
		return fakes.RetryCase[Container]{
			Rec: h.rec, Records: h.records, Step: "Supervisor.Create ",
			Create: func(ctx context.Context) (string, error) {
				return h.m.Create(ctx, h.pod, containerConfig("c"), podConfig())
			},
			Settled:   func(c *Container) bool { return c.State == StateCreated },
			Delivered: func(c *Container) bool { return c.Delivered },
		}
	})
}

// recordedEvents keeps the events sent.
type recordedEvents struct{ fakes.Events }

func (r *recordedEvents) ContainerEvent(kind EventKind, c *Container) {
	r.Add("%d %s %s", kind, c.ID, c.State)
}

type fakeNRI struct{ rec *fakes.Recorder }

func (n *fakeNRI) BlockSync() func() { return func() {} }
func (n *fakeNRI) CreateContainer(ctx context.Context, c *Container, spec *specs.Spec) error {
	return n.rec.Call("NRI.CreateContainer", c.ID)
}
func (n *fakeNRI) PostCreateContainer(ctx context.Context, c *Container) {
	n.rec.Call("NRI.PostCreateContainer", c.ID)
}
func (n *fakeNRI) UndoCreateContainer(ctx context.Context, c *Container) {
	n.rec.Call("NRI.UndoCreateContainer", c.ID)
}
func (n *fakeNRI) StartContainer(ctx context.Context, c *Container) error {
	return n.rec.Call("NRI.StartContainer", c.ID)
}
func (n *fakeNRI) PostStartContainer(ctx context.Context, c *Container) {
	n.rec.Call("NRI.PostStartContainer", c.ID)
}
func (n *fakeNRI) UpdateContainer(ctx context.Context, c *Container, res *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
	return res, n.rec.Call("NRI.UpdateContainer", c.ID)
}
func (n *fakeNRI) PostUpdateContainer(ctx context.Context, c *Container) {
	n.rec.Call("NRI.PostUpdateContainer", c.ID)
}
func (n *fakeNRI) StopContainer(ctx context.Context, c *Container) {
	n.rec.Call("NRI.StopContainer", c.ID)
}
func (n *fakeNRI) RemoveContainer(ctx context.Context, c *Container) {
	n.rec.Call("NRI.RemoveContainer", c.ID)
}

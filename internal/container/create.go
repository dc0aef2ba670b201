package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/cdi"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/fault"
	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/logctx"
	"github.com/berth-cri/berth/internal/oci"
	"github.com/berth-cri/berth/internal/sandbox"
	"github.com/berth-cri/berth/internal/store"
	"github.com/berth-cri/berth/internal/supervisor/client"
	"github.com/berth-cri/berth/internal/userns"
)

// holder names a container as a user of its image.
func holder(id string) string { return "container:" + id }

// Create makes a container in sandbox podID, ready to start. kubelet's
// retry of a create it stopped waiting for (same name) gets the same
// container; a failure half-way rolls back everything.
func (m *Manager) Create(ctx context.Context, podID string, cfg *runtimeapi.ContainerConfig, podCfg *runtimeapi.PodSandboxConfig) (string, error) {
	if cfg.GetMetadata().GetName() == "" {
		return "", fmt.Errorf("container metadata needs a name: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.GetImage().GetImage() == "" {
		return "", fmt.Errorf("container config needs an image: %w", errdefs.ErrInvalidArgument)
	}
	if err := oci.CheckMetadata("container config", cfg.GetLabels(), cfg.GetAnnotations()); err != nil {
		return "", err
	}
	sb, err := m.d.Sandboxes.Get(podID)
	if err != nil {
		return "", err
	}
	if sb.State != sandbox.StateReady {
		return "", fmt.Errorf("pod sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	name := containerName(cfg.GetMetadata(), sb.Config().GetMetadata())
	id, _, err := m.inflight.Do(ctx, name, func(wctx context.Context) (string, error) {
		return m.create(wctx, ctx, name, sb, cfg)
	})
	if err != nil {
		return "", err
	}
	if ctx.Err() == nil {
		if err := m.t.MarkDelivered(id); err != nil {
			logctx.G(ctx, m.d.Log).WithError(err).WithField("container", id).Warn("record the delivery of a create")
		}
	}
	return id, nil
}

func (m *Manager) create(ctx, caller context.Context, name string, sb *sandbox.Sandbox, cfg *runtimeapi.ContainerConfig) (string, error) {
	if id, err := m.t.Reserved(name); id != "" || err != nil {
		return id, err // a retry of a create kubelet stopped waiting for, or a taken name
	}
	if image := cfg.GetImage().GetImage(); isCheckpointArchive(image) {
		return m.createRestored(ctx, caller, name, sb, cfg, image, false)
	}
	if img, err := m.d.Images.Get(cfg.GetImage().GetImage()); err == nil && isCheckpointImage(img) {
		if !m.d.Config.Get().CheckpointImages {
			return "", fmt.Errorf("image %q is a checkpoint image, and restoring from checkpoint images is off (checkpoint_images in the config): %w",
				cfg.GetImage().GetImage(), errdefs.ErrFailedPrecondition)
		}
		return m.createImageRestored(ctx, caller, name, sb, cfg, img.ID.String())
	}
	c := &Container{
		ID: store.NewID(), SandboxID: sb.ID, Name: name, Runtime: sb.Runtime,
		State: StateCreating, CreatedAt: time.Now().UnixNano(), config: cfg, resources: cfg.GetLinux().GetResources(),
	}
	ctx = logctx.WithField(ctx, logctx.ContainerField, c.ID)
	unlock := m.t.Lock(c.ID)
	defer unlock()
	if m.nri != nil {
		defer m.nri.BlockSync()() // until the container is listed
	}

	img, err := m.d.Images.Use(cfg.GetImage().GetImage(), holder(c.ID))
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return "", fmt.Errorf("image %q is not present (pull it first): %w", cfg.GetImage().GetImage(), err)
		}
		return "", err
	}
	if err := m.checkImagePolicy(ctx, img, cfg, sb.Config().GetMetadata().GetNamespace()); err != nil {
		m.d.Images.Release(img.ID.String(), holder(c.ID))
		return "", err
	}
	c.ImageID = img.ID.String()
	c.ImageRef = imageRef(img)
	c.ImageName = imageName(cfg.GetImage(), img)
	in, err := m.check(cfg, sb)
	if err != nil {
		m.d.Images.Release(c.ImageID, holder(c.ID))
		return "", err
	}
	// The rootfs (an overlay mount, ~0.2-1 ms) is made while the
	// supervisor prepares its side and the record is written (setUp). A
	// crash meanwhile leaves a rootfs without a record, which recovery
	// sweeps as an orphan; a failure waits for it and removes it.
	rootfs := m.makeRootfs(c.ID, img.ChainIDs, in.idmap)
	// Waiting for an unreachable supervisor ends with the caller: nobody
	// else would wait for it, and kubelet's retry starts over.
	if err := m.setUp(client.ConnectWithin(ctx, caller), c, sb, img, in, rootfs); err != nil {
		rootfs()
		m.rollback(ctx, c)
		return "", err
	}
	return m.markCreated(ctx, caller, c)
}

// markCreated records c as created (rolling it back if that fails) and
// tells the event subscribers and NRI.
func (m *Manager) markCreated(ctx, caller context.Context, c *Container) (string, error) {
	if err := m.t.Update(c, func(c *Container) { c.State = StateCreated; c.Delivered = caller.Err() == nil }); err != nil {
		m.rollback(ctx, c)
		return "", err
	}
	m.d.Events.ContainerEvent(EventCreated, c.clone())
	if m.nri != nil {
		m.nri.PostCreateContainer(ctx, c.clone())
	}
	return c.ID, nil
}

func (m *Manager) rollback(ctx context.Context, c *Container) {
	if err := m.tearDown(ctx, c); err != nil {
		logctx.G(ctx, m.d.Log).WithError(err).WithField("container", c.ID).Error("roll back a failed CreateContainer")
	}
	if m.nri != nil {
		m.nri.UndoCreateContainer(ctx, c.clone())
	}
}

// imageRef is the digested reference kubelet shows as the pod's imageID.
func imageRef(img image.Image) string {
	if len(img.RepoDigests) > 0 {
		return img.RepoDigests[0]
	}
	return img.ID.String()
}

// imageName is the name to show for the image: what the user specified,
// else what was asked unless that is an id, else the image's first tag.
func imageName(spec *runtimeapi.ImageSpec, img image.Image) string {
	if n := spec.GetUserSpecifiedImage(); n != "" {
		return n
	}
	asked := spec.GetImage()
	if strings.HasPrefix(asked, "sha256:") || asked == img.ID.Encoded() {
		if len(img.RepoTags) > 0 {
			return img.RepoTags[0]
		}
		if len(img.RepoDigests) > 0 {
			return img.RepoDigests[0]
		}
	}
	return asked
}

// checked is what check found valid in a create request.
type checked struct {
	vols    []oci.ImageVolume
	logPath string
	devices []string
	idmap   *userns.Mappings
}

// check refuses a bad create request before anything is made for it.
func (m *Manager) check(cfg *runtimeapi.ContainerConfig, sb *sandbox.Sandbox) (in checked, err error) {
	if in.vols, err = oci.ImageVolumes(cfg.GetMounts()); err != nil {
		return in, err
	}
	if err := checkHostPaths(cfg.GetMounts(), m.ownPaths()); err != nil {
		return in, err
	}
	if in.logPath, err = logPath(sb.Config().GetLogDirectory(), cfg.GetLogPath()); err != nil {
		return in, err
	}
	if in.devices, err = cdi.Devices(cfg); err != nil {
		return in, err
	}
	in.idmap, err = oci.UserNamespace(sb.Config())
	return in, err
}

// setUp has the supervisor create the container: while the supervisor
// makes its side (directory, record, FIFOs, log), berthd writes the first
// record, waits for the rootfs and writes the bundle (unless written
// already: the spec needs the image's /etc/passwd and /etc/group, from the
// mounted rootfs or kept from an earlier container of the image).
// The supervisor creates nothing before that is done: a crash until then
// has it give the create up (its client hung up), and recovery sweeps the
// rootfs and bundle no record names. The caller holds c's lock.
func (m *Manager) setUp(ctx context.Context, c *Container, sb *sandbox.Sandbox, img image.Image, in checked, rootfs func() error) error {
	cfg := c.config
	t := newPhases()
	defer func() {
		logctx.G(ctx, m.d.Log).WithField("container", c.ID).WithFields(t.fields()).Debug("create phases")
	}()
	h, err := config.ResolveHandler(m.d.Config.Get(), sb.RuntimeHandler)
	if err != nil {
		return err
	}
	kind, rpath, root := config.SupervisorRuntime(h, m.d.StateDir)
	c.RuntimeKind, c.RuntimePath, c.RuntimeRoot, c.LogPath = kind, rpath, root, in.logPath
	// With the image's user files known from an earlier container, the
	// bundle is written at once, and the supervisor reads it while it
	// prepares; else it is written once the rootfs is mounted.
	files := m.users.get(c.ImageID)
	if files != nil {
		if err := m.writeBundle(ctx, c, sb, img, in, h, files, t); err != nil {
			return err
		}
	}
	var readyErr error
	ready := func() error {
		readyErr = m.putCreating(c)
		t.mark("record")
		if readyErr == nil {
			readyErr = rootfs()
			t.mark("rootfs")
		}
		if readyErr == nil && files == nil {
			read := m.users.recording(c.ImageID, oci.RootfsFiles(m.d.Snapshots.RootfsTarget(c.ID)))
			readyErr = m.writeBundle(ctx, c, sb, img, in, h, read, t)
		}
		return readyErr
	}
	if _, err := m.d.Supervisor.CreateWhenReady(ctx, c.ID, supv1.CreateRequest{
		Bundle: m.bundleDir(c.ID), Kind: kind, RuntimePath: rpath, RuntimeRoot: root,
		LogPath: in.logPath, Stdin: cfg.GetStdin(), StdinOnce: cfg.GetStdinOnce(), Terminal: cfg.GetTty(),
		MaxLogLineSize: m.d.MaxLogLineSize, SpecWritten: files != nil,
	}, ready); err != nil {
		if readyErr != nil {
			return readyErr // berthd's own part failed, as it says
		}
		if rerr := rootfs(); rerr != nil {
			return rerr
		}
		return fmt.Errorf("create container: %w", err)
	}
	// The init has joined the pause's namespaces by now. The pause still
	// being the process Namespaces proved before the spec was written
	// means the /proc paths named it all along: a pause that died in
	// between, its pid perhaps reused, fails the create here.
	if _, err := sb.Namespaces(); err != nil {
		return err
	}
	t.mark("supervisor")
	fault.Point("container.after-create")
	return nil
}

// writeBundle mounts the image volumes, builds the spec (the image's user
// files read through files), adds the CDI devices and NRI adjustments, and
// writes the bundle.
func (m *Manager) writeBundle(ctx context.Context, c *Container, sb *sandbox.Sandbox, img image.Image, in checked, h config.Handler, files oci.ImageFiles, t *phases) error {
	cfg := c.config
	volumes, err := m.mountImageVolumes(c, in.vols)
	if err != nil {
		return err
	}
	targetNS, err := m.targetPIDNS(cfg)
	if err != nil {
		return err
	}
	podNS, err := sb.Namespaces() // a dead pause is FailedPrecondition
	if err != nil {
		return err
	}
	res, err := oci.ContainerSpec(oci.ContainerInput{
		ID: c.ID, Config: cfg, SandboxConfig: sb.Config(), SandboxID: sb.ID,
		Namespaces: podNS, TargetPIDNS: targetNS, PodFiles: m.d.Sandboxes.PodFiles(sb),
		Image: img.Spec.Config, Rootfs: m.d.Snapshots.RootfsTarget(c.ID), ImageFiles: files, ImageVolumes: volumes, Host: m.d.Host, Handler: config.OCIHandler(h),
	})
	if err != nil {
		return err
	}
	// CDI edits go on the finished spec, as the CDI library expects: its
	// device nodes, cgroup rules, env and mounts are added to (or replace)
	// what the CRI config asked for. internal/oci stays a pure function of
	// its input; the spec dirs are node state read here.
	if err := m.d.CDI.Inject(res.Spec, m.d.Config.Get().CDISpecDirs, in.devices); err != nil {
		return err
	}
	// NRI plugins adjust the finished spec (after CDI, as in containerd)
	// before it is written; a plugin's refusal fails the create.
	if m.nri != nil {
		if err := m.nri.CreateContainer(ctx, c.clone(), res.Spec); err != nil {
			return err
		}
	}
	t.mark("spec")
	c.User, c.StopSignal = res.User, int(res.StopSignal)
	if res.Spec.Linux != nil {
		c.CgroupPath = res.Spec.Linux.CgroupsPath
	}
	bundle := m.bundleDir(c.ID)
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return fmt.Errorf("container bundle: %w", err)
	}
	b, err := json.Marshal(res.Spec)
	if err != nil {
		return fmt.Errorf("encode container spec: %w", err)
	}
	// Not fsynced: the bundle is read at once by the supervisor, and a
	// crash before the record says "created" rolls the container back.
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600); err != nil {
		return fmt.Errorf("container bundle: %w", err)
	}
	t.mark("bundle")
	return nil
}

// putCreating writes c's first record (state creating): from then on, a
// crash makes recovery roll the create back.
func (m *Manager) putCreating(c *Container) error {
	var err error
	if c.ConfigJSON, err = protojson.Marshal(c.config); err != nil {
		return fmt.Errorf("encode container config: %w", err)
	}
	return m.t.Put(c)
}

// makeRootfs starts preparing and mounting a container's rootfs: an
// overlay of the image's layers, id-mapped in a pod user namespace (idmap
// not nil), so that the image's files keep their owners as seen from
// inside. The function it returns waits for the result (any number of
// times).
func (m *Manager) makeRootfs(id string, chainIDs []digest.Digest, idmap *userns.Mappings) func() error {
	done := make(chan error, 1)
	go func() { done <- m.mountRootfs(id, chainIDs, idmap) }()
	return sync.OnceValue(func() error { return <-done })
}

func (m *Manager) mountRootfs(id string, chainIDs []digest.Digest, idmap *userns.Mappings) error {
	if _, err := m.d.Snapshots.PrepareRootfs(id, chainIDs); err != nil {
		return fmt.Errorf("container rootfs: %w", err)
	}
	fault.Point("container.after-snapshot-prepare")
	var err error
	if idmap != nil {
		_, err = m.d.Snapshots.MountRootfsMapped(id, *idmap)
	} else {
		_, err = m.d.Snapshots.MountRootfs(id)
	}
	if err != nil {
		return fmt.Errorf("mount container rootfs: %w", err)
	}
	return nil
}

// phases times the steps of one operation, for a debug log line that shows
// where the time of a slow create went.
type phases struct {
	last  time.Time
	names []string
	took  []time.Duration
}

func newPhases() *phases { return &phases{last: time.Now()} }

func (p *phases) mark(name string) {
	now := time.Now()
	p.names, p.took = append(p.names, name), append(p.took, now.Sub(p.last))
	p.last = now
}

func (p *phases) fields() map[string]any {
	f := make(map[string]any, len(p.names))
	for i, n := range p.names {
		f[n] = p.took[i].Round(10 * time.Microsecond).String()
	}
	return f
}

// targetPIDNS is the pid namespace of namespace_options.target_id for PID
// mode TARGET (kubectl debug --target).
func (m *Manager) targetPIDNS(cfg *runtimeapi.ContainerConfig) (string, error) {
	ns := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	if ns.GetPid() != runtimeapi.NamespaceMode_TARGET {
		return "", nil
	}
	t, err := m.Get(ns.GetTargetId())
	if err != nil {
		return "", fmt.Errorf("target container: %w", err)
	}
	if t.State != StateRunning || t.Pid == 0 {
		return "", fmt.Errorf("target container %s is not running: %w", t.ID, errdefs.ErrFailedPrecondition)
	}
	return fmt.Sprintf("/proc/%d/ns/pid", t.Pid), nil
}

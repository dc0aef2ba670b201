package container

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"github.com/opencontainers/go-digest"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/archive"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/fault"
	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/logctx"
	"github.com/berth-cri/berth/internal/oci"
	"github.com/berth-cri/berth/internal/sandbox"
	"github.com/berth-cri/berth/internal/store"
)

// Restore from a checkpoint archive, as CRI-O does it: CreateContainer
// whose image is the path of an archive on the node (no image reference is
// an absolute path) makes a container in CONTAINER_CREATED whose rootfs is
// the checkpointed image's with the archive's rootfs diff applied, and whose
// spec is rebuilt for the new pod from the CRI config the checkpointed
// container was created with (so its mounts are where the dump expects
// them). Nothing runs until StartContainer, which has the supervisor restore
// the processes (OpRestore) into the pod's namespaces. The unpacked archive
// stays in <root_dir>/checkpoints/restore-<id> (the record's Restore) until
// the container is removed.

// isCheckpointArchive reports whether image names a checkpoint archive.
func isCheckpointArchive(image string) bool {
	if !filepath.IsAbs(image) {
		return false
	}
	fi, err := os.Stat(image)
	return err == nil && fi.Mode().IsRegular()
}

// annotationCRIOCheckpoint marks a checkpoint image as CRI-O makes and
// reads them; checkpointctl's (and podman's) is
// metadata.CheckpointAnnotationName. Either, on the manifest, makes an
// image a checkpoint image.
const annotationCRIOCheckpoint = "io.kubernetes.cri-o.annotations.checkpoint.name"

// isCheckpointImage reports whether img is a checkpoint image: an OCI
// image whose layer holds a checkpoint archive's files (what `buildah add`
// of the archive into a scratch image with the annotation makes).
func isCheckpointImage(img image.Image) bool {
	_, crio := img.Annotations[annotationCRIOCheckpoint]
	_, ctl := img.Annotations[metadata.CheckpointAnnotationName]
	return crio || ctl
}

// createImageRestored is createRestored from the checkpoint image id (the
// request names it, by any of its references): its
// layer's snapshot is copied like a pod checkpoint's directory. The image
// is held meanwhile, so that RemoveImage cannot free the layer under the
// copy; the restored container holds the checkpointed image, not this one.
func (m *Manager) createImageRestored(ctx, caller context.Context, name string, sb *sandbox.Sandbox, req *runtimeapi.ContainerConfig, id string) (string, error) {
	ref := req.GetImage().GetImage()
	hold := "restore:" + name
	img, err := m.d.Images.Use(id, hold)
	if err != nil {
		return "", err
	}
	defer m.d.Images.Release(img.ID.String(), hold)
	if err := m.d.Images.CheckPolicy(ctx, img, sb.Config().GetMetadata().GetNamespace()); err != nil {
		return "", err
	}
	if len(img.ChainIDs) != 1 {
		return "", fmt.Errorf("checkpoint image %q has %d layers, not one holding a checkpoint archive's files: %w", ref, len(img.ChainIDs), errdefs.ErrInvalidArgument)
	}
	dir, err := m.d.Snapshots.LayerDiff(img.ChainIDs[0])
	if err != nil {
		return "", fmt.Errorf("checkpoint image %q: %w", ref, err)
	}
	cid, err := m.createRestored(ctx, caller, name, sb, req, dir, true)
	if err != nil {
		return "", fmt.Errorf("restore from checkpoint image %q: %w", ref, err)
	}
	return cid, nil
}

// createRestored is create for a CRI config whose image is the checkpoint
// archive at path (or, fromDir, a directory holding an archive's files: a
// container's directory of a pod checkpoint, a checkpoint image's layer).
// The caller reserved name.
func (m *Manager) createRestored(ctx context.Context, caller context.Context, name string, sb *sandbox.Sandbox, req *runtimeapi.ContainerConfig, path string, fromDir bool) (string, error) {
	if err := m.d.Criu.Usable(); err != nil {
		return "", err
	}
	c := &Container{
		ID: store.NewID(), SandboxID: sb.ID, Name: name, Runtime: sb.Runtime,
		State: StateCreating, CreatedAt: time.Now().UnixNano(),
	}
	ctx = logctx.WithField(ctx, logctx.ContainerField, c.ID)
	unlock := m.t.Lock(c.ID)
	defer unlock()
	dir := filepath.Join(m.checkpointWorkDir(), "restore-"+c.ID)
	fail := func(err error) (string, error) {
		os.RemoveAll(dir)
		return "", err
	}
	if err := unpackCheckpoint(ctx, path, dir, fromDir); err != nil {
		return fail(err)
	}
	cfg, ref, err := restoredConfig(dir, req)
	if err != nil {
		return fail(err)
	}
	c.config, c.resources, c.Restore = cfg, cfg.GetLinux().GetResources(), dir
	img, err := m.d.Images.Use(ref, holder(c.ID))
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			err = fmt.Errorf("the checkpoint's image %q is not present (pull it first): %w", ref, err)
		}
		return fail(err)
	}
	c.ImageID, c.ImageRef, c.ImageName = img.ID.String(), imageRef(img), imageName(cfg.GetImage(), img)
	in, err := m.check(cfg, sb)
	if err == nil && in.idmap != nil {
		err = fmt.Errorf("restoring into a user-namespaced pod is not supported: %w", errdefs.ErrFailedPrecondition)
	}
	var h config.Handler
	if err == nil {
		h, err = config.ResolveHandler(m.d.Config.Get(), sb.RuntimeHandler)
	}
	if err != nil {
		m.d.Images.Release(c.ImageID, holder(c.ID))
		return fail(err)
	}
	kind, rpath, root := config.SupervisorRuntime(h, m.d.StateDir)
	if kind != supv1.RuntimeLibcontainer {
		m.d.Images.Release(c.ImageID, holder(c.ID))
		return fail(fmt.Errorf("the pod's handler %q is of type %s: only libcontainer containers can be restored: %w", sb.RuntimeHandler, kind, errdefs.ErrFailedPrecondition))
	}
	c.RuntimeKind, c.RuntimePath, c.RuntimeRoot, c.LogPath = kind, rpath, root, in.logPath
	// From the first record on, a failure (or a crash: recovery) rolls
	// everything back, the unpacked archive included (tearDown).
	if err := m.putCreating(c); err != nil {
		m.d.Images.Release(c.ImageID, holder(c.ID))
		return fail(err)
	}
	if err := m.restoreRootfs(ctx, c, img.ChainIDs, dir); err != nil {
		m.rollback(ctx, c)
		return "", err
	}
	fault.Point("container.restore-after-rootfs")
	files := oci.RootfsFiles(m.d.Snapshots.RootfsTarget(c.ID))
	if err := m.writeBundle(ctx, c, sb, img, in, h, files, newPhases()); err != nil {
		m.rollback(ctx, c)
		return "", err
	}
	return m.markCreated(ctx, caller, c)
}

// unpackCheckpoint extracts the archive at path (or copies the directory
// path, fromDir) into dir (new), with the layer extractor's protections:
// the archive is a file on the node, but whoever wrote it need not be
// trusted with the node's filesystem. A directory is copied, not used in
// place: CRIU writes its log beside the images, and a pod checkpoint's
// data must not change (api.proto).
func unpackCheckpoint(ctx context.Context, path, dir string, fromDir bool) error {
	var r io.Reader
	if fromDir {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(tarDir(pw, path, archiveFiles)) }()
		defer pr.Close()
		r = pr
	} else {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("open checkpoint archive: %w", err)
		}
		defer f.Close()
		r = f
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("unpack checkpoint archive: %w", err)
	}
	if _, err := archive.Apply(ctx, dir, r, archive.Options{}); err != nil {
		return fmt.Errorf("unpack checkpoint %s: %w", path, err)
	}
	for _, name := range []string{metadata.ConfigDumpFile, filepath.Join(metadata.CheckpointDirectory, "inventory.img")} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			if fromDir {
				return fmt.Errorf("not a checkpoint (no %s): %w", name, errdefs.ErrInvalidArgument)
			}
			return fmt.Errorf("%s is not a checkpoint archive (no %s): %w", path, name, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// restoredConfig is the CRI config of the restored container: the
// checkpointed container's own (its command, mounts, security context: what
// the dump was made under), with the request's metadata, log path, labels
// and annotations (the new pod's), and the checkpoint's image. It also
// returns that image's reference (its id).
func restoredConfig(dir string, req *runtimeapi.ContainerConfig) (*runtimeapi.ContainerConfig, string, error) {
	var cc metadata.ContainerConfig
	if _, err := metadata.ReadJSONFile(&cc, dir, metadata.ConfigDumpFile); err != nil {
		return nil, "", fmt.Errorf("checkpoint %s: %v: %w", metadata.ConfigDumpFile, err, errdefs.ErrInvalidArgument)
	}
	data, err := os.ReadFile(filepath.Join(dir, archiveCRIConfig))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("the checkpoint was not made by berth (no %s): only berth's checkpoints can be restored: %w", archiveCRIConfig, errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return nil, "", fmt.Errorf("checkpoint %s: %w", archiveCRIConfig, err)
	}
	cfg := &runtimeapi.ContainerConfig{}
	if err := protojson.Unmarshal(data, cfg); err != nil {
		return nil, "", fmt.Errorf("checkpoint %s: %v: %w", archiveCRIConfig, err, errdefs.ErrInvalidArgument)
	}
	ref := cc.RootfsImageRef
	if ref == "" {
		ref = cc.RootfsImageName
	}
	if ref == "" {
		return nil, "", fmt.Errorf("checkpoint %s names no image: %w", metadata.ConfigDumpFile, errdefs.ErrInvalidArgument)
	}
	cfg.Metadata = req.GetMetadata()
	cfg.LogPath = req.GetLogPath()
	if len(req.GetLabels()) > 0 {
		cfg.Labels = req.GetLabels()
	}
	if len(req.GetAnnotations()) > 0 {
		cfg.Annotations = req.GetAnnotations()
	}
	cfg.Image = &runtimeapi.ImageSpec{Image: ref, UserSpecifiedImage: cc.RootfsImageName}
	return cfg, ref, nil
}

// restoreRootfs prepares c's rootfs and applies the checkpoint's changes
// to its writable layer, in overlay form, before it is mounted.
func (m *Manager) restoreRootfs(ctx context.Context, c *Container, chainIDs []digest.Digest, dir string) error {
	if _, err := m.d.Snapshots.PrepareRootfs(c.ID, chainIDs); err != nil {
		return fmt.Errorf("container rootfs: %w", err)
	}
	upper := m.d.Snapshots.RootfsUpper(c.ID)
	if f, err := os.Open(filepath.Join(dir, metadata.RootFsDiffTar)); err == nil {
		_, err = archive.Apply(ctx, upper, f, archive.Options{})
		f.Close()
		if err != nil {
			return fmt.Errorf("apply the checkpoint's rootfs diff: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checkpoint %s: %w", metadata.RootFsDiffTar, err)
	}
	var deleted []string
	if _, err := metadata.ReadJSONFile(&deleted, dir, metadata.DeletedFilesFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checkpoint %s: %w", metadata.DeletedFilesFile, err)
	}
	if len(deleted) > 0 {
		// As whiteouts, through the extractor (which keeps them inside).
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, p := range deleted {
			p = strings.TrimPrefix(path.Clean("/"+p), "/")
			if p == "" {
				continue
			}
			tw.WriteHeader(&tar.Header{Name: path.Join(path.Dir(p), ".wh."+path.Base(p)), Typeflag: tar.TypeReg, Mode: 0o600})
		}
		tw.Close()
		if _, err := archive.Apply(ctx, upper, &buf, archive.Options{}); err != nil {
			return fmt.Errorf("apply the checkpoint's deleted files: %w", err)
		}
	}
	if _, err := m.d.Snapshots.MountRootfs(c.ID); err != nil {
		return fmt.Errorf("mount container rootfs: %w", err)
	}
	return nil
}

// restoreRequest is the supervisor's OpRestore for created container c.
func (m *Manager) restoreRequest(c *Container) supv1.CreateRequest {
	return supv1.CreateRequest{
		Bundle: m.bundleDir(c.ID), Kind: c.RuntimeKind, RuntimePath: c.RuntimePath, RuntimeRoot: c.RuntimeRoot,
		LogPath: c.LogPath, Stdin: c.config.GetStdin(), StdinOnce: c.config.GetStdinOnce(), MaxLogLineSize: m.d.MaxLogLineSize,
		Restore: &supv1.RestoreRequest{
			ImagesDir: filepath.Join(c.Restore, metadata.CheckpointDirectory),
			WorkDir:   filepath.Join(c.Restore, "restore"), CriuPath: m.d.Criu.Path,
		},
	}
}

// SweepCheckpoints removes what a crash left under <root_dir>/checkpoints:
// dumps in the making and unpacked archives no container names. Call it
// after Recover, before serving.
func (m *Manager) SweepCheckpoints() {
	keep := map[string]bool{}
	for _, c := range m.List(Filter{}) {
		if c.Restore != "" {
			keep[filepath.Base(c.Restore)] = true
		}
	}
	entries, _ := os.ReadDir(m.checkpointWorkDir())
	for _, e := range entries {
		if !keep[e.Name()] {
			os.RemoveAll(filepath.Join(m.checkpointWorkDir(), e.Name()))
		}
	}
}

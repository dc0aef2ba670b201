package container

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"google.golang.org/protobuf/encoding/protojson"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logctx"
)

// Checkpoint archives: the layout CRI-O writes and checkpointctl reads (its
// lib package names the files), so `checkpointctl show` and `inspect` read
// berth's archives and tools written for the others find what they expect.
//
//	checkpoint/        CRIU's images (plus libcontainer's descriptors.json
//	                   and the supervisor's berth-stdio.json)
//	config.dump        metadata.ContainerConfig: id, name, image, times
//	spec.dump          the container's OCI spec (containerd's annotations)
//	rootfs-diff.tar    the writable layer's files (no whiteouts)
//	deleted.files      JSON list of image paths the container deleted
//	dump.log, stats-dump   CRIU's log and statistics of the dump
//	container.log      the CRI log up to the checkpoint
//	berth-config.json  the CRI ContainerConfig it was created with (berth's
//	                   own, for a restore that rebuilds the same spec)
const (
	archiveContainerLog = "container.log"
	archiveCRIConfig    = "berth-config.json"
	archiveStatsDump    = "stats-dump"
)

// checkpointWorkDir holds checkpoints in the making under root_dir (a
// dump can be as large as the container's memory: not the state dir's
// tmpfs).
func (m *Manager) checkpointWorkDir() string { return filepath.Join(m.d.RootDir, "checkpoints") }

// Checkpoint dumps running container id with CRIU, leaving it running, and
// writes the archive at location (replaced if it exists). A ctx deadline
// that passes first returns an error wrapping context.DeadlineExceeded;
// the dump then finishes in the background and its files are removed.
func (m *Manager) Checkpoint(ctx context.Context, id, location string) error {
	if location == "" || !filepath.IsAbs(location) {
		return fmt.Errorf("checkpoint location %q must be an absolute path: %w", location, errdefs.ErrInvalidArgument)
	}
	if fi, err := os.Stat(filepath.Dir(location)); err != nil || !fi.IsDir() {
		return fmt.Errorf("checkpoint location %q: its directory must exist: %w", location, errdefs.ErrInvalidArgument)
	}
	c, err := m.Get(id)
	if err != nil {
		return err
	}
	if c.State != StateRunning {
		return fmt.Errorf("container %s is %s, not running: %w", c.ID, c.State, errdefs.ErrFailedPrecondition)
	}
	if c.RuntimeKind != supv1.RuntimeLibcontainer {
		return fmt.Errorf("container %s runs under the %s handler (%s): only libcontainer containers can be checkpointed: %w", c.ID, c.Runtime, c.RuntimeKind, errdefs.ErrFailedPrecondition)
	}
	if c.config.GetTty() {
		return fmt.Errorf("container %s has a terminal (tty): it cannot be checkpointed: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	if err := m.d.Criu.Usable(); err != nil {
		return err
	}
	if err := os.MkdirAll(m.checkpointWorkDir(), 0o700); err != nil {
		return fmt.Errorf("checkpoint work dir: %w", err)
	}
	work, err := os.MkdirTemp(m.checkpointWorkDir(), c.ID+"-")
	if err != nil {
		return fmt.Errorf("checkpoint work dir: %w", err)
	}
	// The container is frozen from before the dump until its writable
	// layer is copied: left running in between, it could change a file
	// the dump holds open (CRIU then refuses the restore: "File ... has
	// bad size"). The dump runs apart from ctx: stopping CRIU half-way
	// would leave the container's processes frozen or with CRIU's parasite
	// in them. Past the deadline the caller is answered; the checkpoint
	// goes on, the container is resumed and the files go when it ends.
	if err := m.d.Supervisor.Pause(ctx, c.ID, true); err != nil {
		return fmt.Errorf("pause container %s for its checkpoint: %w", c.ID, err)
	}
	done := make(chan error, 1)
	go func() {
		err := m.d.Supervisor.Checkpoint(context.WithoutCancel(ctx), c.ID, supv1.CheckpointRequest{
			ImagesDir: filepath.Join(work, metadata.CheckpointDirectory), WorkDir: filepath.Join(work, "criu"),
			CriuPath: m.d.Criu.Path,
		})
		if err == nil {
			err = m.writeCheckpointFiles(c, work, time.Now())
		} else {
			err = fmt.Errorf("checkpoint of container %s: %w", c.ID, err)
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if rerr := m.d.Supervisor.Pause(rctx, c.ID, false); rerr != nil {
			logctx.G(ctx, m.d.Log).WithError(rerr).Error("resume a container after its checkpoint")
			if err == nil {
				err = fmt.Errorf("resume container %s after its checkpoint: %w", c.ID, rerr)
			}
		}
		done <- err
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		go func() { <-done; os.RemoveAll(work) }()
		return fmt.Errorf("checkpoint of container %s: %w", c.ID, context.DeadlineExceeded)
	}
	defer os.RemoveAll(work)
	if err != nil {
		return err
	}
	return writeTar(location, work, archiveFiles)
}

// archiveFiles are what a container's checkpoint holds.
var archiveFiles = []string{metadata.CheckpointDirectory, metadata.ConfigDumpFile, metadata.SpecDumpFile,
	metadata.RootFsDiffTar, metadata.DeletedFilesFile, metadata.DumpLogFile, archiveStatsDump, archiveContainerLog, archiveCRIConfig}

// writeCheckpointFiles writes the archive's files beside the CRIU images
// in work.
func (m *Manager) writeCheckpointFiles(c *Container, work string, at time.Time) error {
	cc := metadata.ContainerConfig{
		ID: c.ID, Name: c.config.GetMetadata().GetName(), RootfsImage: c.ImageName, RootfsImageRef: c.ImageID,
		RootfsImageName: c.ImageName, OCIRuntime: string(c.RuntimeKind), CreatedTime: time.Unix(0, c.CreatedAt), CheckpointedAt: at,
	}
	if _, err := metadata.WriteJSONFile(cc, work, metadata.ConfigDumpFile); err != nil {
		return fmt.Errorf("checkpoint %s: %w", metadata.ConfigDumpFile, err)
	}
	if err := copyFile(filepath.Join(m.bundleDir(c.ID), "config.json"), filepath.Join(work, metadata.SpecDumpFile)); err != nil {
		return fmt.Errorf("checkpoint %s: %w", metadata.SpecDumpFile, err)
	}
	cfg, err := protojson.Marshal(c.config)
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", archiveCRIConfig, err)
	}
	if err := os.WriteFile(filepath.Join(work, archiveCRIConfig), cfg, 0o600); err != nil {
		return fmt.Errorf("checkpoint %s: %w", archiveCRIConfig, err)
	}
	// CRIU's own files: the log and statistics are in its work dir.
	for _, name := range []string{metadata.DumpLogFile, archiveStatsDump} {
		for _, dir := range []string{"criu", metadata.CheckpointDirectory} {
			if err := os.Rename(filepath.Join(work, dir, name), filepath.Join(work, name)); err == nil {
				break
			}
		}
	}
	if c.LogPath != "" {
		if err := copyFile(c.LogPath, filepath.Join(work, archiveContainerLog)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("checkpoint %s: %w", archiveContainerLog, err)
		}
	}
	deleted, err := writeRootfsDiff(m.d.Snapshots.RootfsUpper(c.ID), filepath.Join(work, metadata.RootFsDiffTar))
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", metadata.RootFsDiffTar, err)
	}
	if len(deleted) > 0 {
		if _, err := metadata.WriteJSONFile(deleted, work, metadata.DeletedFilesFile); err != nil {
			return fmt.Errorf("checkpoint %s: %w", metadata.DeletedFilesFile, err)
		}
	}
	return nil
}

// writeRootfsDiff tars the overlay upper dir upper (the container's
// writable layer) into dst and returns the paths its whiteouts delete.
// Hard links are stored as separate files; an opaque directory's hiding of
// the image's entries below it is not recorded (CRI-O's format has no
// word for it).
func writeRootfsDiff(upper, dst string) ([]string, error) {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	var deleted []string
	err = filepath.WalkDir(upper, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(upper, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, _ := info.Sys().(*syscall.Stat_t)
		if info.Mode()&fs.ModeCharDevice != 0 && st != nil && st.Rdev == 0 {
			deleted = append(deleted, "/"+rel) // an overlay whiteout
			return nil
		}
		return addToTar(tw, path, rel, info)
	})
	if err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return deleted, f.Close()
}

// writeTar writes the entries names of dir (missing ones skipped) as a tar
// at location, through a temporary file renamed over it.
func writeTar(location, dir string, names []string) error {
	tmp, err := os.CreateTemp(filepath.Dir(location), "."+filepath.Base(location)+".tmp-")
	if err != nil {
		return fmt.Errorf("checkpoint archive: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := tarDir(tmp, dir, names); err != nil {
		return fmt.Errorf("checkpoint archive: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("checkpoint archive: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return fmt.Errorf("checkpoint archive: %w", err)
	}
	if err := os.Rename(tmp.Name(), location); err != nil {
		return fmt.Errorf("checkpoint archive: %w", err)
	}
	return nil
}

// tarDir writes the entries names of dir (all of them if names is nil;
// missing ones skipped) to w as a tar stream.
func tarDir(w io.Writer, dir string, names []string) error {
	if names == nil {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			names = append(names, e.Name())
		}
	}
	tw := tar.NewWriter(w)
	for _, name := range names {
		root := filepath.Join(dir, name)
		if _, err := os.Lstat(root); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(dir, path)
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			return addToTar(tw, path, rel, info)
		})
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

// addToTar writes the file at path as entry name.
func addToTar(tw *tar.Writer, path, name string, info fs.FileInfo) error {
	link := ""
	if info.Mode()&fs.ModeSymlink != 0 {
		var err error
		if link, err = os.Readlink(path); err != nil {
			return err
		}
	}
	h, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return err
	}
	h.Name = filepath.ToSlash(name)
	if info.IsDir() && !strings.HasSuffix(h.Name, "/") {
		h.Name += "/"
	}
	h.Uname, h.Gname = "", ""
	h.Format = tar.FormatPAX
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.CopyN(tw, f, h.Size)
	return err
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logctx"
	"github.com/berth-cri/berth/internal/sandbox"
)

// Pod checkpoints (cri-api 0.37's CheckpointPod and RestorePod). The layout
// inside the caller's output_path is checkpointctl's pod layout:
//
//	pod.options     metadata.CheckpointedPodOptions: version 1, the
//	                containers (metadata name -> berth's full name)
//	pod.dump        the pod's PodSandboxConfig (protojson)
//	<name>/         one container's checkpoint, as in a container archive
//	                (checkpoint.go), unpacked
const podCheckpointVersion = 1

// CheckpointPod dumps containers ids of pod podID into the empty directory
// out as one consistent cut: every container is paused before any is
// dumped and all are resumed before it returns, also on error or deadline.
// On error nothing is left in out.
func (m *Manager) CheckpointPod(ctx context.Context, podID, out string, ids []string, options map[string]string) (err error) {
	if len(options) > 0 {
		return fmt.Errorf("berth takes no pod checkpoint options: %w", errdefs.ErrInvalidArgument)
	}
	if err := checkEmptyDir(out); err != nil {
		return err
	}
	sb, err := m.d.Sandboxes.Get(podID)
	if err != nil {
		return err
	}
	if sb.State != sandbox.StateReady {
		return fmt.Errorf("pod sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	if len(ids) == 0 {
		return fmt.Errorf("container_ids is empty: %w", errdefs.ErrInvalidArgument)
	}
	var cs []*Container
	names := map[string]bool{}
	for _, id := range ids {
		c, err := m.Get(id)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(cs, func(o *Container) bool { return o.ID == c.ID }) {
			return fmt.Errorf("container %s is listed twice: %w", c.ID, errdefs.ErrInvalidArgument)
		}
		if c.SandboxID != sb.ID {
			return fmt.Errorf("container %s is not in pod %s: %w", c.ID, sb.ID, errdefs.ErrInvalidArgument)
		}
		if c.State != StateRunning {
			return fmt.Errorf("container %s is %s, not running: %w", c.ID, c.State, errdefs.ErrFailedPrecondition)
		}
		if c.RuntimeKind != supv1.RuntimeLibcontainer || c.config.GetTty() {
			return fmt.Errorf("container %s cannot be checkpointed (tty, or not libcontainer): %w", c.ID, errdefs.ErrFailedPrecondition)
		}
		names[c.config.GetMetadata().GetName()] = true
		cs = append(cs, c)
	}
	if err := m.d.Criu.Usable(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			removeContents(out) // no partial checkpoint (api.proto)
		}
	}()
	// Resumed whatever happens, with a context of their own: the caller's
	// deadline must not leave the pod frozen.
	var paused []string
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, id := range paused {
			if rerr := m.d.Supervisor.Pause(rctx, id, false); rerr != nil {
				logctx.G(ctx, m.d.Log).WithError(rerr).WithField("container", id).Error("resume a container after a pod checkpoint")
				if err == nil {
					err = fmt.Errorf("resume container %s: %w", id, rerr)
				}
			}
		}
	}()
	for _, c := range cs {
		if err := m.d.Supervisor.Pause(ctx, c.ID, true); err != nil {
			return fmt.Errorf("pause container %s: %w", c.ID, err)
		}
		paused = append(paused, c.ID)
	}
	at := time.Now()
	containers := map[string]string{}
	for _, c := range cs {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("checkpoint of pod %s: %w", sb.ID, err)
		}
		name := c.config.GetMetadata().GetName()
		dir := filepath.Join(out, name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("checkpoint of pod %s: %w", sb.ID, err)
		}
		// A dump is not cut short (see Checkpoint): it ends, then the
		// deadline is honoured.
		err := m.d.Supervisor.Checkpoint(context.WithoutCancel(ctx), c.ID, supv1.CheckpointRequest{
			ImagesDir: filepath.Join(dir, metadata.CheckpointDirectory), WorkDir: filepath.Join(dir, "criu"), CriuPath: m.d.Criu.Path,
		})
		if err != nil {
			return fmt.Errorf("checkpoint of container %s: %w", c.ID, err)
		}
		if err := m.writeCheckpointFiles(c, dir, at); err != nil {
			return err
		}
		os.RemoveAll(filepath.Join(dir, "criu"))
		containers[name] = c.Name
	}
	if _, err := metadata.WriteJSONFile(metadata.CheckpointedPodOptions{Version: podCheckpointVersion, Containers: containers}, out, metadata.PodOptionsFile); err != nil {
		return fmt.Errorf("checkpoint %s: %w", metadata.PodOptionsFile, err)
	}
	podCfg, err := protojson.Marshal(sb.Config())
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", metadata.PodDumpFile, err)
	}
	if err := os.WriteFile(filepath.Join(out, metadata.PodDumpFile), podCfg, 0o600); err != nil {
		return fmt.Errorf("checkpoint %s: %w", metadata.PodDumpFile, err)
	}
	return ctx.Err()
}

// RestorePod runs a new pod sandbox from podCfg and creates, in
// CONTAINER_CREATED, one container per config from the pod checkpoint in
// dir (matched by metadata name). On error everything it made is removed.
func (m *Manager) RestorePod(ctx context.Context, dir string, podCfg *runtimeapi.PodSandboxConfig, handler string, options map[string]string, cfgs []*runtimeapi.ContainerConfig) (podID string, restored []*runtimeapi.RestoredContainer, err error) {
	if len(options) > 0 {
		return "", nil, fmt.Errorf("berth takes no pod restore options: %w", errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(dir) {
		return "", nil, fmt.Errorf("checkpoint_path %q is not absolute: %w", dir, errdefs.ErrInvalidArgument)
	}
	var opts metadata.CheckpointedPodOptions
	if _, err := metadata.ReadJSONFile(&opts, dir, metadata.PodOptionsFile); err != nil {
		return "", nil, fmt.Errorf("%s is not a pod checkpoint: %v: %w", dir, err, errdefs.ErrInvalidArgument)
	}
	if opts.Version != podCheckpointVersion {
		return "", nil, fmt.Errorf("pod checkpoint version %d, berth reads %d: %w", opts.Version, podCheckpointVersion, errdefs.ErrInvalidArgument)
	}
	if len(cfgs) == 0 {
		return "", nil, fmt.Errorf("container_configs is empty: %w", errdefs.ErrInvalidArgument)
	}
	seen := map[string]bool{}
	for _, cfg := range cfgs {
		name := cfg.GetMetadata().GetName()
		if name == "" || seen[name] || opts.Containers[name] == "" {
			return "", nil, fmt.Errorf("container config %q: names must be unique and exactly the checkpoint's: %w", name, errdefs.ErrInvalidArgument)
		}
		seen[name] = true
	}
	if len(seen) != len(opts.Containers) {
		return "", nil, fmt.Errorf("the checkpoint has %d containers, the request %d: %w", len(opts.Containers), len(seen), errdefs.ErrInvalidArgument)
	}
	if err := m.d.Criu.Usable(); err != nil {
		return "", nil, err
	}
	made, err := m.d.Sandboxes.Run(ctx, podCfg, handler)
	if err != nil {
		return "", nil, err
	}
	defer func() {
		if err != nil {
			// Removing the sandbox removes the containers made in it.
			rctx := context.WithoutCancel(ctx)
			m.d.Sandboxes.Stop(rctx, made)
			if rerr := m.d.Sandboxes.Remove(rctx, made); rerr != nil {
				logctx.G(ctx, m.d.Log).WithError(rerr).WithField("pod", made).Error("remove the sandbox of a failed RestorePod")
			}
		}
	}()
	sb, err := m.d.Sandboxes.Get(made)
	if err != nil {
		return "", nil, err
	}
	for _, cfg := range cfgs {
		src := filepath.Join(dir, cfg.GetMetadata().GetName())
		if err := checkRestoreMatches(src, cfg); err != nil {
			return "", nil, err
		}
		name := containerName(cfg.GetMetadata(), sb.Config().GetMetadata())
		if id, err := m.t.Reserved(name); id != "" || err != nil {
			if err == nil {
				err = fmt.Errorf("container name %q is taken: %w", name, errdefs.ErrAlreadyExists)
			}
			return "", nil, err
		}
		id, err := m.createRestored(ctx, ctx, name, sb, cfg, src, true)
		if err != nil {
			return "", nil, fmt.Errorf("restore container %q: %w", cfg.GetMetadata().GetName(), err)
		}
		restored = append(restored, &runtimeapi.RestoredContainer{Name: cfg.GetMetadata().GetName(), ContainerId: id})
	}
	return made, restored, nil
}

// checkRestoreMatches fails a restore-time config whose command or args
// (when given) differ from the checkpointed process's: the checkpoint is
// authoritative for the process and the request only describes it.
func checkRestoreMatches(src string, cfg *runtimeapi.ContainerConfig) error {
	orig, _, err := restoredConfig(src, &runtimeapi.ContainerConfig{})
	if err != nil {
		return err
	}
	if len(cfg.GetCommand()) > 0 && !slices.Equal(cfg.GetCommand(), orig.GetCommand()) ||
		len(cfg.GetArgs()) > 0 && !slices.Equal(cfg.GetArgs(), orig.GetArgs()) {
		return fmt.Errorf("container %q: command %q %q differs from the checkpointed %q %q: %w", cfg.GetMetadata().GetName(),
			cfg.GetCommand(), cfg.GetArgs(), orig.GetCommand(), orig.GetArgs(), errdefs.ErrInvalidArgument)
	}
	return nil
}

// checkEmptyDir requires dir to be an existing, empty directory.
func checkEmptyDir(dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("output_path %q is not absolute: %w", dir, errdefs.ErrInvalidArgument)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("output_path: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if len(entries) > 0 {
		return fmt.Errorf("output_path %s is not empty: %w", dir, errdefs.ErrInvalidArgument)
	}
	return nil
}

// removeContents empties dir, keeping it (the caller's).
func removeContents(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

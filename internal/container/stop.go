package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logctx"
)

// killWait bounds the wait for a SIGKILLed container to be reaped.
const killWait = 30 * time.Second

// Stop sends the container its stop signal, and SIGKILL after timeout (0:
// at once). Stopping an exited, never-started or unknown container
// succeeds (critest checks unknown ids; api.proto wants idempotence).
func (m *Manager) Stop(ctx context.Context, id string, timeout time.Duration) error {
	c, err := m.Get(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	unlock := m.t.Lock(c.ID)
	defer unlock()
	if c = m.t.Current(c.ID); c == nil || c.State != StateRunning {
		return nil
	}
	return m.stopLocked(ctx, c, timeout)
}

func (m *Manager) stopLocked(ctx context.Context, c *Container, timeout time.Duration) error {
	if timeout > 0 {
		sig := syscall.Signal(c.StopSignal)
		if sig == 0 {
			sig = syscall.SIGTERM
		}
		if err := m.d.Supervisor.Kill(ctx, c.ID, sig, false); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return fmt.Errorf("signal container %s: %w", c.ID, err)
		}
		wctx, cancel := context.WithTimeout(ctx, timeout)
		st, err := m.d.Supervisor.Wait(wctx, c.ID)
		cancel()
		if err == nil && st.Status == supv1.StatusStopped {
			m.recordExitLocked(c, st)
			return nil
		}
	}
	return m.killLocked(ctx, c)
}

// killLocked SIGKILLs every process of the container and waits until the
// supervisor has recorded the exit. The caller holds c's lock.
func (m *Manager) killLocked(ctx context.Context, c *Container) error {
	if err := m.d.Supervisor.Kill(ctx, c.ID, syscall.SIGKILL, true); err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			m.markLostLocked(c, "the supervisor lost track of the container")
			return nil
		}
		return fmt.Errorf("kill container %s: %w", c.ID, err)
	}
	wctx, cancel := context.WithTimeout(ctx, killWait)
	defer cancel()
	st, err := m.d.Supervisor.Wait(wctx, c.ID)
	if err != nil {
		return fmt.Errorf("wait for container %s to die: %w", c.ID, err)
	}
	m.recordExitLocked(c, st)
	return nil
}

// StopPod kills every running container of a pod at once: kubelet has
// already given each its grace period before stopping the pod.
func (m *Manager) StopPod(ctx context.Context, sandboxID string) error {
	return m.eachOfPod(sandboxID, func(id string) error { return m.Stop(ctx, id, 0) })
}

// RemovePod removes every container of a pod.
func (m *Manager) RemovePod(ctx context.Context, sandboxID string) error {
	return m.eachOfPod(sandboxID, func(id string) error { return m.Remove(ctx, id) })
}

// eachOfPod runs fn for every container of the pod, concurrently.
func (m *Manager) eachOfPod(sandboxID string, fn func(id string) error) error {
	var ids []string
	m.t.Each(func(c *Container) {
		if c.SandboxID == sandboxID {
			ids = append(ids, c.ID)
		}
	})
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(id)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Remove removes a container, killing it first if it runs. Removing an
// unknown container succeeds (api.proto).
func (m *Manager) Remove(ctx context.Context, id string) error {
	c, err := m.Get(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	unlock := m.t.Lock(c.ID)
	defer unlock()
	if c = m.t.Current(c.ID); c == nil {
		return nil
	}
	if c.State == StateRunning {
		if err := m.killLocked(ctx, c); err != nil {
			return err
		}
	}
	if err := m.tearDown(ctx, c); err != nil {
		return err
	}
	m.d.Events.ContainerEvent(EventDeleted, c.clone())
	if m.nri != nil {
		m.nri.RemoveContainer(ctx, c.clone())
	}
	return nil
}

// tearDown frees everything a container has and forgets it: supervisor
// state, rootfs and image volumes, bundle, image holds, record. Each step
// is idempotent, so it serves Remove, the rollback of a failed Create and
// recovery. The caller holds c's lock.
func (m *Manager) tearDown(ctx context.Context, c *Container) error {
	if err := m.d.Supervisor.Delete(ctx, c.ID); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		if !errors.Is(err, errdefs.ErrFailedPrecondition) {
			return fmt.Errorf("delete container %s: %w", c.ID, err)
		}
		// Still running (a create that failed after the process began).
		if err := m.d.Supervisor.Kill(ctx, c.ID, syscall.SIGKILL, true); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return fmt.Errorf("kill container %s: %w", c.ID, err)
		}
		wctx, cancel := context.WithTimeout(ctx, killWait)
		m.d.Supervisor.Wait(wctx, c.ID)
		cancel()
		if err := m.d.Supervisor.Delete(ctx, c.ID); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return fmt.Errorf("delete container %s: %w", c.ID, err)
		}
	}
	// The image volumes' read-only snapshots go with the rootfs.
	if err := m.d.Snapshots.RemoveRootfs(c.ID); err != nil {
		return fmt.Errorf("remove container rootfs: %w", err)
	}
	if err := os.RemoveAll(m.bundleDir(c.ID)); err != nil {
		return fmt.Errorf("remove container bundle: %w", err)
	}
	os.Remove(filepath.Dir(m.bundleDir(c.ID)))
	if c.Restore != "" {
		if err := os.RemoveAll(c.Restore); err != nil {
			return fmt.Errorf("remove the unpacked checkpoint: %w", err)
		}
	}
	if c.ImageID != "" {
		if err := m.d.Images.Release(c.ImageID, holder(c.ID)); err != nil {
			logctx.G(ctx, m.d.Log).WithError(err).WithField("container", c.ID).Warn("release container image")
		}
	}
	m.releaseVolumeImages(ctx, c)
	return m.t.Forget(c)
}

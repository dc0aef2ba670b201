package sandbox

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logctx"
	"github.com/berth-cri/berth/internal/oci"
)

// pauseStopTimeout bounds the wait for a SIGKILLed pause to be reaped.
const pauseStopTimeout = 10 * time.Second

// Stop stops the sandbox's containers and pause process and gives back its
// network (CNI DEL, netns pin removed). Stopping a stopped or unknown
// sandbox succeeds, as api.proto requires of StopPodSandbox.
func (m *Manager) Stop(ctx context.Context, id string) error {
	return m.withPod(ctx, id, "stop", Containers.StopPod, func(s *Sandbox) error {
		m.notifyStop(ctx, s)
		return m.stopLocked(ctx, s)
	})
}

// withPod is how Stop and Remove begin: it finds the sandbox id, applies
// containers ("stop" or "remove" in errors) to the pod's containers, then
// takes the pod's lock and runs locked with the live record. An unknown
// sandbox, or one removed while its containers were handled (they are
// handled before the pod's lock is taken, under their own locks), runs
// nothing and succeeds: api.proto makes StopPodSandbox and
// RemovePodSandbox idempotent.
func (m *Manager) withPod(ctx context.Context, id, verb string, containers func(Containers, context.Context, string) error, locked func(*Sandbox) error) error {
	s, err := m.Get(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if m.containers != nil {
		if err := containers(m.containers, ctx, s.ID); err != nil {
			return fmt.Errorf("%s containers of pod %s: %w", verb, s.ID, err)
		}
	}
	unlock := m.t.Lock(s.ID)
	defer unlock()
	if s = m.t.Current(s.ID); s == nil {
		return nil // removed meanwhile
	}
	return locked(s)
}

// notifyStop tells NRI plugins that a ready pod is being stopped, its
// containers already are: once, as a stopped pod is not ready. The caller
// holds s's lock.
func (m *Manager) notifyStop(ctx context.Context, s *Sandbox) {
	if m.nri != nil && s.State == StateReady {
		m.nri.StopPodSandbox(ctx, s.clone())
	}
}

// stopLocked kills the pause process and releases the network; each step
// is idempotent and recorded, so a crash part-way is finished by the next
// Stop. The caller holds s's lock.
func (m *Manager) stopLocked(ctx context.Context, s *Sandbox) error {
	if err := m.killPause(ctx, s.ID); err != nil {
		return err
	}
	// A create a crash interrupted may have run CNI ADD without recording
	// it (NetworkReady is written after ADD returns): DEL then anyway, or
	// its IP allocation and host rules leak. DEL of an unknown pod is a
	// no-op for CNI plugins.
	if s.NetworkReady || (s.State == StateCreating && s.NetNS != "") {
		pod, err := m.networkPod(s)
		if err == nil {
			err = m.d.Network.Teardown(ctx, pod)
		}
		if err != nil {
			return fmt.Errorf("tear down the network of pod %s: %w", s.ID, err)
		}
		if err := m.t.Update(s, func(s *Sandbox) { s.NetworkReady = false }); err != nil {
			return err
		}
	}
	if s.NetNS != "" {
		if err := m.d.NetNS.Remove(s.NetNS); err != nil {
			return fmt.Errorf("remove the network namespace of pod %s: %w", s.ID, err)
		}
	}
	if s.State != StateNotReady && s.State != StateCreating {
		return m.t.Update(s, func(s *Sandbox) { s.State = StateNotReady })
	}
	return nil
}

// killPause SIGKILLs the pause process (it holds nothing worth a grace
// period) and waits until the supervisor has reaped it.
func (m *Manager) killPause(ctx context.Context, id string) error {
	st, err := m.d.Supervisor.State(ctx, id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pause of pod %s: %w", id, err)
	}
	if st.Status == supv1.StatusStopped {
		return nil
	}
	if err := m.d.Supervisor.Kill(ctx, id, syscall.SIGKILL, true); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return fmt.Errorf("kill pause of pod %s: %w", id, err)
	}
	if st.Status == supv1.StatusCreated {
		return nil // never started: nothing to wait for
	}
	wctx, cancel := context.WithTimeout(ctx, pauseStopTimeout)
	defer cancel()
	if _, err := m.d.Supervisor.Wait(wctx, id); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return fmt.Errorf("wait for pause of pod %s: %w", id, err)
	}
	return nil
}

// Remove removes the sandbox with its containers, stopping it first if
// needed. Removing an unknown sandbox succeeds (api.proto).
func (m *Manager) Remove(ctx context.Context, id string) error {
	return m.withPod(ctx, id, "remove", Containers.RemovePod, func(s *Sandbox) error {
		m.notifyStop(ctx, s)
		if err := m.tearDown(ctx, s); err != nil {
			return err
		}
		if m.nri != nil {
			m.nri.RemovePodSandbox(ctx, s)
		}
		m.events.SandboxEvent(EventDeleted, s.clone())
		return nil
	})
}

// tearDown undoes everything a sandbox has, in reverse order of setUp, and
// forgets it. It serves Remove, the rollback of a failed Run and the
// recovery of one interrupted by a crash. The caller holds s's lock.
func (m *Manager) tearDown(ctx context.Context, s *Sandbox) error {
	if err := m.stopLocked(ctx, s); err != nil {
		return err
	}
	if err := m.d.Supervisor.Delete(ctx, s.ID); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return fmt.Errorf("delete pause of pod %s: %w", s.ID, err)
	}
	if err := m.d.Snapshots.RemoveRootfs(s.ID); err != nil {
		return fmt.Errorf("remove sandbox rootfs: %w", err)
	}
	if err := m.d.Files.Cleanup(m.podDir(s.ID)); err != nil {
		return err
	}
	if s.Image != "" {
		if err := m.d.Images.Release(s.Image, holder(s.ID)); err != nil {
			logctx.G(ctx, m.d.Log).WithError(err).WithField("sandbox", s.ID).Warn("release sandbox image")
		}
	}
	return m.t.Forget(s)
}

// Namespaces are the namespace paths containers of s join: the pinned
// netns, and the pause process's IPC, UTS and PID namespaces unless the pod
// uses the host's. The /proc paths are built only once the pause is proven
// to be the process s started (pid and start time): a dead pause's pid may
// name an unrelated process. Otherwise the error wraps
// errdefs.ErrFailedPrecondition and ns holds the netns alone.
func (s *Sandbox) Namespaces() (oci.SandboxNamespaces, error) {
	ns := oci.SandboxNamespaces{Net: s.NetNS}
	opts := s.NamespaceOptions()
	proc := func(kind string) string { return fmt.Sprintf("/proc/%d/ns/%s", s.PausePID, kind) }
	if s.PausePID == 0 {
		return ns, nil
	}
	if err := s.checkPause(); err != nil {
		return ns, err
	}
	if opts.GetIpc() != runtimeapi.NamespaceMode_NODE {
		ns.IPC = proc("ipc")
	}
	if !s.HostNetwork() {
		ns.UTS = proc("uts")
	}
	if opts.GetPid() != runtimeapi.NamespaceMode_NODE {
		ns.PID = proc("pid")
	}
	if u := opts.GetUsernsOptions(); u != nil && u.GetMode() == runtimeapi.NamespaceMode_POD {
		ns.User = proc("user")
	}
	return ns, nil
}

// PodFiles are the host paths of the files s's containers share (see
// PrepareFiles): /dev/shm is the host's when the pod uses host IPC.
func (m *Manager) PodFiles(s *Sandbox) oci.PodFiles {
	dir := m.podDir(s.ID)
	f := oci.PodFiles{
		Hosts:      filepath.Join(dir, "hosts"),
		ResolvConf: filepath.Join(dir, "resolv.conf"),
		Hostname:   filepath.Join(dir, "hostname"),
		Shm:        filepath.Join(dir, "shm"),
	}
	if s.NamespaceOptions().GetIpc() == runtimeapi.NamespaceMode_NODE {
		f.Shm = m.d.HostFiles.Shm
	}
	return f
}

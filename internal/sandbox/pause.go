package sandbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/proctree"
)

// A sandbox lives as long as its pause process: the pause holds the pod's
// IPC, UTS and PID namespaces, which its containers join. When it dies (the
// OOM killer, a kill -9) the sandbox is not ready any more, at once, so
// kubelet recreates the pod, and no container may join the namespaces of
// whatever process has the dead pause's pid now.

// EventKind names a sandbox lifecycle event.
type EventKind int

const (
	EventCreated EventKind = iota
	EventStarted
	EventStopped
	EventDeleted
)

// Events receives sandbox lifecycle events. kubelet's evented PLEG reads
// them as container events whose container id is the sandbox's, as
// containerd sends them: a stopped event with a NOTREADY sandbox is what
// makes kubelet recreate the pod without waiting for its relist.
type Events interface {
	SandboxEvent(kind EventKind, s *Sandbox)
}

type noEvents struct{}

func (noEvents) SandboxEvent(EventKind, *Sandbox) {}

// SetEvents wires the event sink (which needs the manager, hence late).
func (m *Manager) SetEvents(e Events) { m.events = e }

// watchPause waits for the pause of sandbox id to end through the
// supervisor, as container exits are watched (client.WaitExit), and then
// marks the sandbox not ready; after a berthd restart, Recover starts the
// watch again.
func (m *Manager) watchPause(id string) {
	st, err := m.d.Supervisor.WaitExit(id, func() bool { return m.t.Current(id) != nil }, func(err error) {
		m.d.Log.WithError(err).WithField("sandbox", id).Warn("wait for the pause process to end; retrying")
	})
	switch {
	case st != nil:
		m.pauseEnded(id, "exited")
	case errors.Is(err, errdefs.ErrNotFound):
		m.pauseEnded(id, "is unknown to the supervisor")
	}
}

// pauseEnded records that the pause of sandbox id is gone. A ready sandbox
// becomes not ready (NRI plugins hear of it as a stop, once: Stop then
// does not notify again); every end is published as the sandbox's stopped
// event, also when Stop killed the pause, as containerd does.
func (m *Manager) pauseEnded(id, how string) {
	unlock := m.t.Lock(id)
	defer unlock()
	s := m.t.Current(id)
	if s == nil || s.State == StateCreating {
		return // removed, or a rollback of a failed Run owns it
	}
	if s.State == StateReady {
		m.d.Log.WithField("sandbox", id).Warnf("pause process %s: sandbox is not ready", how)
		if m.nri != nil {
			m.nri.StopPodSandbox(context.Background(), s.clone())
		}
		if err := m.t.Update(s, func(s *Sandbox) { s.State = StateNotReady }); err != nil {
			m.d.Log.WithError(err).WithField("sandbox", id).Error("record that the pause process ended")
		}
	}
	m.events.SandboxEvent(EventStopped, s.clone())
}

// checkPause proves that the pause process still is the one the sandbox
// started: the pid alone may name another process once the pause is dead
// and its pid reused.
func (s *Sandbox) checkPause() error {
	start, ok := proctree.StartTime(s.PausePID)
	if !ok || s.PauseStartTime == 0 || start != s.PauseStartTime {
		return fmt.Errorf("pod sandbox %s: its pause process (pid %d) is gone: %w", s.ID, s.PausePID, errdefs.ErrFailedPrecondition)
	}
	return nil
}

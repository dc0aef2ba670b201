package container

import (
	"context"
	"errors"
	"fmt"
	"time"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/fault"
)

// Start starts a created container and watches for its exit.
func (m *Manager) Start(ctx context.Context, id string) error {
	c, err := m.Get(id)
	if err != nil {
		return err
	}
	unlock := m.t.Lock(c.ID)
	defer unlock()
	c = m.t.Current(c.ID)
	if c == nil {
		return fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	if c.State != StateCreated {
		return fmt.Errorf("container %s is %s, not created: %w", c.ID, c.State, errdefs.ErrFailedPrecondition)
	}
	if m.nri != nil {
		if err := m.nri.StartContainer(ctx, c.clone()); err != nil {
			return err
		}
	}
	fault.Point("container.before-start")
	var st *supv1.State
	if c.Restore != "" {
		// Created from a checkpoint: the supervisor creates it now, its
		// processes restored by CRIU (restore.go).
		st, err = m.d.Supervisor.Restore(ctx, c.ID, m.restoreRequest(c))
		if err == nil {
			fault.Point("container.after-restore")
		}
	} else {
		st, err = m.d.Supervisor.Start(ctx, c.ID)
	}
	if err != nil {
		return fmt.Errorf("start container %s: %w", c.ID, err)
	}
	if err := m.t.Update(c, func(c *Container) {
		c.State, c.Pid, c.StartedAt = StateRunning, st.Pid, nanos(st.StartedAt)
	}); err != nil {
		return err
	}
	m.d.Metrics.ContainerStarted()
	m.d.Events.ContainerEvent(EventStarted, c.clone())
	if m.nri != nil {
		m.nri.PostStartContainer(ctx, c.clone())
	}
	if st.Status == supv1.StatusStopped && st.Exit != nil {
		// It already exited (a /bin/true): record it now.
		m.recordExitLocked(c, st)
		return nil
	}
	go m.watch(c.ID)
	return nil
}

func nanos(t int64) int64 {
	if t == 0 {
		return time.Now().UnixNano()
	}
	return t
}

// watch waits for the container's exit through the supervisor and records
// it (see client.WaitExit: no exit is lost while berthd runs); after a
// berthd restart, Recover starts watch again.
func (m *Manager) watch(id string) {
	st, err := m.d.Supervisor.WaitExit(id, func() bool { return m.t.Current(id) != nil }, func(err error) {
		m.d.Log.WithError(err).WithField("container", id).Warn("wait for container exit; retrying")
	})
	switch {
	case st != nil:
		m.recordExit(id, st)
	case errors.Is(err, errdefs.ErrNotFound):
		m.recordLost(id)
	}
}

// recordExit stores an exit the supervisor reported.
func (m *Manager) recordExit(id string, st *supv1.State) {
	unlock := m.t.Lock(id)
	defer unlock()
	if c := m.t.Current(id); c != nil {
		m.recordExitLocked(c, st)
	}
}

// recordExitLocked stores st's exit in c unless c already has one. The
// caller holds c's lock.
func (m *Manager) recordExitLocked(c *Container, st *supv1.State) {
	if c.State == StateExited || st.Exit == nil {
		return
	}
	e := st.Exit
	if err := m.t.Update(c, func(c *Container) {
		c.State, c.ExitCode, c.Reason, c.FinishedAt = StateExited, e.ExitCode, e.Reason, nanos(e.FinishedAt)
		if e.Reason == supv1.ReasonUnknown {
			c.ExitCode = UnknownExitCode
		}
	}); err != nil {
		m.d.Log.WithError(err).WithField("container", c.ID).Error("record container exit")
	}
	m.d.Events.ContainerEvent(EventStopped, c.clone())
	m.notifyStopped(c)
}

// notifyStopped tells NRI plugins c exited, stopped or on its own. The
// caller holds c's lock and has just recorded the exit (once per
// container: an exited container records no other).
func (m *Manager) notifyStopped(c *Container) {
	if m.nri != nil {
		m.nri.StopContainer(context.Background(), c.clone())
	}
}

// recordLost marks a container the supervisor no longer knows as exited
// with an unknown status: 255, never 0 (CRI-CONTRACT.md).
func (m *Manager) recordLost(id string) {
	unlock := m.t.Lock(id)
	defer unlock()
	if c := m.t.Current(id); c != nil {
		m.markLostLocked(c, "the supervisor lost track of the container")
	}
}

func (m *Manager) markLostLocked(c *Container, why string) {
	if c.State == StateExited {
		return
	}
	if err := m.t.Update(c, func(c *Container) {
		c.State, c.ExitCode, c.Reason, c.Message, c.FinishedAt = StateExited, UnknownExitCode, ReasonUnknown, why, time.Now().UnixNano()
	}); err != nil {
		m.d.Log.WithError(err).WithField("container", c.ID).Error("record lost container")
	}
	m.d.Events.ContainerEvent(EventStopped, c.clone())
	m.notifyStopped(c)
}

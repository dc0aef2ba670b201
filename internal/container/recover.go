package container

import (
	"context"
	"errors"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
)

// Recover loads the container records and reconciles them with the
// supervisor: exits that happened while berthd was down are taken from the
// supervisor's durable records, exactly; a container the supervisor does
// not know (it died with the node) is exited with an unknown status (255);
// a create a crash interrupted is rolled back; running containers are
// watched again.
func (m *Manager) Recover(ctx context.Context) error {
	recs, damaged, err := m.t.Load()
	if err != nil {
		return err
	}
	for _, d := range damaged {
		m.d.Log.WithError(d.Err).WithField("container", d.ID).Error("dropping a container record that cannot be read")
		m.dropRecord(d.ID)
	}
	for id, c := range recs {
		log := m.d.Log.WithField("container", id)
		if err := c.decode(); err != nil {
			log.WithError(err).Error("dropping a container record that cannot be read")
			m.dropRecord(id)
			continue
		}
		m.t.Index(c)
		if c.ImageID != "" {
			if _, err := m.d.Images.Use(c.ImageID, holder(id)); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
				log.WithError(err).Warn("claim the container image again")
			}
		}
		for _, v := range c.VolumeImages {
			if _, err := m.d.Images.Use(v.ImageID, volumeHolder(id, v.Mount)); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
				log.WithError(err).Warn("claim an image volume's image again")
			}
		}
		unlock := m.t.Lock(id)
		m.reconcile(ctx, c)
		unlock()
	}
	return nil
}

// reconcile brings one record in line with the supervisor. The caller
// holds c's lock.
func (m *Manager) reconcile(ctx context.Context, c *Container) {
	log := m.d.Log.WithField("container", c.ID)
	if c.State == StateCreating {
		log.Warn("rolling back a container whose creation was interrupted")
		m.rollback(ctx, c)
		return
	}
	if c.State == StateExited {
		return
	}
	st, err := m.d.Supervisor.State(ctx, c.ID)
	switch {
	case errors.Is(err, errdefs.ErrNotFound) && c.State == StateCreated && c.Restore != "":
		// Created from a checkpoint: the supervisor has it from the start
		// on only, and a restore berthd's crash cut short left nothing
		// there (the supervisor undoes a failed OpRestore), so it is
		// still created, its archive unpacked on disk.
	case errors.Is(err, errdefs.ErrNotFound):
		m.markLostLocked(c, "the container was lost (node restart or supervisor state lost)")
	case err != nil:
		log.WithError(err).Error("ask the supervisor about a container")
	case st.Status == supv1.StatusStopped:
		if c.State == StateCreated && c.StartedAt == 0 {
			if err := m.t.Update(c, func(c *Container) { c.StartedAt = st.StartedAt }); err != nil {
				log.WithError(err).Error("record when a container that exited while berthd was down started")
			}
		}
		m.recordExitLocked(c, st)
	case st.Status == supv1.StatusRunning:
		if c.State != StateRunning {
			// Started, but berthd died before recording it.
			if err := m.t.Update(c, func(c *Container) { c.State, c.Pid, c.StartedAt = StateRunning, st.Pid, nanos(st.StartedAt) }); err != nil {
				log.WithError(err).Error("record that a container started while berthd was down")
			}
		}
		go m.watch(c.ID)
	}
}

// dropRecord deletes the record of a container that cannot be loaded.
func (m *Manager) dropRecord(id string) {
	if err := m.t.DeleteRecord(id); err != nil {
		m.d.Log.WithError(err).WithField("container", id).Error("delete an unreadable container record; it will be met again at the next start")
	}
}

package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/proctree"
)

// Recover loads the sandbox records and reconciles them with what runs:
// a sandbox whose pause process is gone (it died, or the node rebooted) is
// NOTREADY and kubelet will stop and remove it; a sandbox a crash left
// half-created is rolled back; records too damaged to read are dropped
// (logged); netns pins and pod directories no record owns are removed.
func (m *Manager) Recover(ctx context.Context) error {
	recs, damaged, err := m.t.Load()
	if err != nil {
		return err
	}
	for _, d := range damaged {
		m.d.Log.WithError(d.Err).WithField("sandbox", d.ID).Error("dropping a sandbox record that cannot be read")
		m.dropRecord(d.ID)
	}
	for id, s := range recs {
		log := m.d.Log.WithField("sandbox", id)
		if err := s.decode(); err != nil {
			log.WithError(err).Error("dropping a sandbox record that cannot be read")
			m.dropRecord(id)
			continue
		}
		m.t.Index(s)
		if s.Image != "" {
			// Holders live in the image service's memory: claim it again.
			if _, err := m.d.Images.Use(s.Image, holder(id)); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
				log.WithError(err).Warn("claim the sandbox image again")
			}
		}
		if s.State == StateCreating {
			log.Warn("rolling back a sandbox whose creation was interrupted")
			if err := killOrphanCNI(id); err != nil {
				log.WithError(err).Error("stop the CNI plugins of an interrupted sandbox")
			}
			unlock := m.t.Lock(id)
			err := m.tearDown(ctx, s)
			unlock()
			if err != nil {
				log.WithError(err).Error("roll back an interrupted sandbox; it stays listed as not ready")
				if err := m.t.Update(s, func(s *Sandbox) { s.State = StateNotReady }); err != nil {
					log.WithError(err).Error("record an interrupted sandbox as not ready")
				}
			}
			continue
		}
		if s.State == StateReady {
			m.recoverPause(ctx, s)
		}
	}
	m.sweep(ctx)
	return nil
}

// recoverPause watches the pause of a ready sandbox again, or marks the
// sandbox not ready if the pause is gone. A record written before pause
// start times were recorded gets the running pause's now: the supervisor
// holds the pause through a pidfd, so its pid is the pause's.
func (m *Manager) recoverPause(ctx context.Context, s *Sandbox) {
	log := m.d.Log.WithField("sandbox", s.ID)
	st, err := m.d.Supervisor.State(ctx, s.ID)
	if err != nil || st.Status != supv1.StatusRunning {
		log.Warn("pause process is gone: sandbox is not ready")
		if err := m.t.Update(s, func(s *Sandbox) { s.State = StateNotReady }); err != nil {
			log.WithError(err).Error("record that the pause process is gone")
		}
		return
	}
	if s.PauseStartTime == 0 && st.Pid == s.PausePID {
		if start, ok := proctree.StartTime(st.Pid); ok {
			if err := m.t.Update(s, func(s *Sandbox) { s.PauseStartTime = start }); err != nil {
				log.WithError(err).Error("record the pause's start time")
			}
		}
	}
	go m.watchPause(s.ID)
}

// sweep removes netns pins and pod directories that belong to no sandbox:
// leftovers of a crash between creating them and recording them, or of a
// record dropped as unreadable. A pin's pod network is torn down first
// (CNI DEL from the CNI cache), else its IP allocation would leak; a pin
// whose teardown failed is kept, for the next start's sweep to try again.
// Each failure is logged with the sandbox's id, and only what is gone is
// logged as removed.
func (m *Manager) sweep(ctx context.Context) {
	known := m.t.IDs()
	pins, err := m.d.NetNS.List(m.netnsDir())
	if err != nil {
		m.d.Log.WithError(err).Error("list network namespace pins to sweep")
	}
	for _, id := range pins {
		if known[id] {
			continue
		}
		p := filepath.Join(m.netnsDir(), id)
		log := m.d.Log.WithFields(logrus.Fields{"sandbox": id, "netns": p})
		if err := killOrphanCNI(id); err != nil {
			log.WithError(err).Error("stop the CNI plugins of a network namespace no sandbox owns; kept")
			continue
		}
		if err := m.d.Network.Teardown(ctx, network.Pod{ID: id, NetNS: p}); err != nil {
			log.WithError(err).Error("tear down the network of a network namespace no sandbox owns; kept for the next start")
			continue
		}
		if err := m.d.NetNS.Remove(p); err != nil {
			log.WithError(err).Error("remove a network namespace no sandbox owns")
			continue
		}
		log.Warn("removed a network namespace no sandbox owns")
	}
	dirs, err := os.ReadDir(filepath.Join(m.d.StateDir, "sandboxes"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		m.d.Log.WithError(err).Error("list pod directories to sweep")
	}
	for _, d := range dirs {
		if known[d.Name()] {
			continue
		}
		log := m.d.Log.WithField("sandbox", d.Name())
		if err := m.d.Files.Cleanup(m.podDir(d.Name())); err != nil {
			log.WithError(err).Error("remove pod files no sandbox owns")
			continue
		}
		log.Warn("removed pod files no sandbox owns")
	}
}

// dropRecord deletes the record of a sandbox that cannot be loaded.
func (m *Manager) dropRecord(id string) {
	if err := m.t.DeleteRecord(id); err != nil {
		m.d.Log.WithError(err).WithField("sandbox", id).Error("delete an unreadable sandbox record; it will be met again at the next start")
	}
}

// IDs returns the ids of every known sandbox, for orphan sweeps by others.
func (m *Manager) IDs() map[string]bool { return m.t.IDs() }

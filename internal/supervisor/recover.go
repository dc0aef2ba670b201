package supervisor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-cri/berth/internal/atomicfile"
	"github.com/berth-cri/berth/internal/keeper"
	"github.com/berth-cri/berth/internal/logctx"
)

// recover loads every container directory and re-adopts live containers.
// After an upgrade they are still our children (their exits stay exact) and
// terminal containers get their handed-over pty masters back; after a
// restart they are not our children (the keeper above us reaps them and
// records their exits, which watch reads), and a terminal container has no
// master any more (console.go).
func (s *Server) recover() error {
	dir := filepath.Join(s.dir, "containers")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() || atomicfile.IsTemp(e.Name()) {
			continue
		}
		cdir := filepath.Join(dir, e.Name())
		rec, err := loadRecord(cdir)
		if errors.Is(err, os.ErrNotExist) {
			// A create that crashed before its first write (nothing ran),
			// or a delete half done.
			s.keeper.Drop(cdir)
			s.keeper.Drop(filepath.Join(cdir, "stdin"))
			os.RemoveAll(cdir)
			continue
		}
		if err != nil {
			s.log.WithError(err).WithField("dir", cdir).Error("skipping unreadable container record")
			continue
		}
		c := newContainer(cdir, rec)
		s.containers[rec.ID] = c
		if console, ok := s.consoles[rec.ID]; ok {
			c.console = console
			delete(s.consoles, rec.ID)
		}
		exit, err := loadExit(cdir)
		if err != nil {
			s.log.WithError(err).WithField(logctx.ContainerField, rec.ID).Error("unreadable exit record; reporting an unknown exit")
		}
		if exit != nil {
			c.exit = exit
			close(c.exited)
			// Its output was read to the end before the exit was recorded.
			s.dropHolds(c)
			// Its output ended before the upgrade (or nobody waits for it
			// any more): a handed-over terminal has no use.
			c.closeConsole()
			continue
		}
		if rec.Pid == 0 {
			// Crashed during create: whatever the runtime made is reported
			// as an unknown exit, and Delete cleans it.
			s.recordExit(c, unknownExit(time.Now()))
			continue
		}
		if err := s.adopt(c); err != nil {
			s.log.WithError(err).WithField(logctx.ContainerField, rec.ID).Error("re-adopting container failed; reporting an unknown exit")
			s.recordExit(c, unknownExit(time.Now()))
		}
	}
	for id, console := range s.consoles {
		// A handed-over master whose container record is gone.
		s.log.WithField(logctx.ContainerField, id).Warn("closing an inherited terminal of an unknown container")
		console.Close()
	}
	s.consoles = nil
	s.sweepKeeperExits()
	return nil
}

// keeperSweepInterval spaces the sweeps of the keeper's exit records after
// the one at start: what a dead supervisor's other processes (an exec's)
// leave may end, and be recorded, long after.
const keeperSweepInterval = 10 * time.Minute

func (s *Server) sweepKeeperExitsEvery(d time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			s.sweepKeeperExits()
		}
	}
}

// sweepKeeperExits removes the keeper's exit records that name no
// container's init: the exits of other processes a dead supervisor left
// (an exec's, a runtime's helper), which nobody will ask for. A record
// that names one is removed once its exit is recorded (watch).
func (s *Server) sweepKeeperExits() {
	inits := map[string]bool{}
	s.mu.Lock()
	for _, c := range s.containers {
		c.mu.Lock()
		if c.rec.Pid != 0 {
			inits[keeper.ExitName(c.rec.Pid, c.rec.PidStartTime)] = true
		}
		c.mu.Unlock()
	}
	s.mu.Unlock()
	keeper.SweepExits(s.exits, func(name string) bool { return inits[name] })
}

// adopt reattaches a container that had no exit recorded: its init, if it
// still is the same process, gets a pidfd; if it is gone, the watcher drains
// the output and reports an unknown exit.
func (s *Server) adopt(c *container) error {
	c.mu.Lock()
	rec := c.rec
	c.mu.Unlock()
	pidfd, err := openPidfd(rec.Pid, rec.PidStartTime)
	if err != nil {
		return err
	}
	if pidfd != nil && rec.StartedAt == 0 {
		// A start may have finished without its record being saved.
		if started, err := s.rt[rec.Kind].started(context.Background(), &rec); err == nil && started {
			c.mu.Lock()
			c.rec.StartedAt = time.Now().UnixNano()
			c.saveLocked()
			c.mu.Unlock()
		}
	}
	return s.attach(context.Background(), c, pidfd, nil)
}

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/cgroupdriver"
	"github.com/berth-cri/berth/internal/metrics"
	"github.com/berth-cri/berth/internal/supervisor/client"
)

// ensureSupervisor makes sure a supervisor answers, and upgrades it in
// place when its binary on disk was replaced since it started (a package
// upgrade installs berthd and berth-supervisor together and restarts
// berthd): the supervisor re-executes itself, same pid, so its containers
// stay its children and nothing is lost.
func ensureSupervisor(ctx context.Context, log logrus.FieldLogger, stateDir string, driver cgroupdriver.Driver) error {
	bin, err := supervisorBinary()
	if err != nil {
		return err
	}
	opts := supervisorOptions(driver)
	c, err := client.EnsureRunning(ctx, bin, stateDir, opts...)
	if err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	v, err := c.Version(ctx)
	if err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	changed, err := binaryChanged(v, bin)
	if err != nil {
		log.WithError(err).Warn("cannot tell whether the supervisor binary changed; not upgrading it")
		return nil
	}
	if !changed {
		return nil
	}
	log.WithFields(logrus.Fields{"pid": v.Pid, "binary": bin}).Info("the supervisor binary changed: upgrading the supervisor in place")
	uctx, cancel := context.WithTimeout(ctx, upgradeTimeout)
	nv, err := c.Upgrade(uctx)
	cancel()
	if err == nil {
		log.WithFields(logrus.Fields{"pid": nv.Pid, "version": nv.Binary}).Info("supervisor upgraded")
		return nil
	}
	// A failed exec leaves the old supervisor serving; an exec that
	// succeeded into a binary that then died (a file still being written,
	// say) leaves none, and the running containers to re-adopt. Either
	// way, go on with whatever answers now rather than fail the start:
	// the next start of berthd tries the upgrade again.
	log.WithError(err).Error("upgrading the supervisor in place failed; going on with the supervisor that answers")
	if _, err := client.EnsureRunning(ctx, bin, stateDir, opts...); err != nil {
		return fmt.Errorf("supervisor after a failed upgrade: %w", err)
	}
	return nil
}

// supervisorOptions places a supervisor berthd starts outside berthd's own
// cgroup, where a stop or restart of berthd's service cannot reach it: in
// a transient scope of its own with the systemd driver (systemd owns the
// tree, and so must know the unit), else in a cgroup of its own below the
// hierarchy's root (the client's default).
func supervisorOptions(driver cgroupdriver.Driver) []client.Option {
	if driver == cgroupdriver.Systemd {
		return []client.Option{client.WithSystemdScope(cgroupdriver.SupervisorScope)}
	}
	return nil
}

// upgradeTimeout bounds an in-place upgrade: the exec and the new
// process's start take well under a second.
const upgradeTimeout = 30 * time.Second

// binaryChanged reports whether the running supervisor was started from
// another file than bin (same path, replaced by a new inode). It runs from
// a sealed in-memory copy, so its /proc/<pid>/exe never is bin: the file it
// came from is the one its Version names. A supervisor too old to name it
// is compared by /proc/<pid>/exe, which upgrades it once.
func binaryChanged(v *v1.VersionInfo, bin string) (bool, error) {
	if v.File != "" {
		return v.File != v1.FileID(bin), nil
	}
	var running, onDisk syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/exe", v.Pid), &running); err != nil {
		return false, err
	}
	if err := syscall.Stat(bin, &onDisk); err != nil {
		return false, err
	}
	return running.Dev != onDisk.Dev || running.Ino != onDisk.Ino, nil
}

// supervisorBinary is berth-supervisor beside berthd's own executable (as
// make install and the build put them), else the one on PATH.
func supervisorBinary() (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "berth-supervisor")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("berth-supervisor")
	if err != nil {
		return "", fmt.Errorf("berth-supervisor is neither beside berthd nor on PATH: %w", err)
	}
	return p, nil
}

// supervisorCheckInterval is how often berthd checks that the supervisor
// answers.
const supervisorCheckInterval = time.Second

// watchSupervisor starts the supervisor again when it stops answering. A
// supervisor that dies is started again by the keeper above it within
// milliseconds, with every exit and output line kept (internal/keeper);
// this covers the keeper's death too: the new keeper's supervisor
// re-adopts the running containers and reports the exits nobody could
// observe as Unknown, and berthd's exit watchers, which retry, pick those
// up. A start that finds a keeper running gives way to it. Each successful
// restart is counted in m. It runs until ctx ends.
func watchSupervisor(ctx context.Context, log logrus.FieldLogger, stateDir string, driver cgroupdriver.Driver, m *metrics.Metrics) {
	c := client.New(stateDir)
	t := time.NewTicker(supervisorCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		vctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := c.Version(vctx)
		cancel()
		if err == nil || ctx.Err() != nil {
			continue
		}
		log.WithError(err).Error("the supervisor does not answer: starting it again")
		if err := ensureSupervisor(ctx, log, stateDir, driver); err != nil {
			log.WithError(err).Error("restart the supervisor")
			continue
		}
		m.SupervisorRestarted()
	}
}

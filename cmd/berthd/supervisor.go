package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/berth-cri/berth/internal/supervisor/client"
)

// ensureSupervisor makes sure a supervisor answers, and upgrades it in
// place when its binary on disk was replaced since it started (a package
// upgrade installs berthd and berth-supervisor together and restarts
// berthd): the supervisor re-executes itself, same pid, so its containers
// stay its children and nothing is lost.
func ensureSupervisor(ctx context.Context, log logrus.FieldLogger, stateDir string) error {
	bin, err := supervisorBinary()
	if err != nil {
		return err
	}
	c, err := client.EnsureRunning(ctx, bin, stateDir)
	if err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	v, err := c.Version(ctx)
	if err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	changed, err := binaryChanged(v.Pid, bin)
	if err != nil {
		log.WithError(err).Warn("cannot tell whether the supervisor binary changed; not upgrading it")
		return nil
	}
	if !changed {
		return nil
	}
	log.WithFields(logrus.Fields{"pid": v.Pid, "binary": bin}).Info("the supervisor binary changed: upgrading the supervisor in place")
	nv, err := c.Upgrade(ctx)
	if err != nil {
		return fmt.Errorf("upgrade the supervisor: %w", err)
	}
	log.WithFields(logrus.Fields{"pid": nv.Pid, "version": nv.Binary}).Info("supervisor upgraded")
	return nil
}

// binaryChanged reports whether process pid runs another file than bin
// (same path, replaced by a new inode).
func binaryChanged(pid int, bin string) (bool, error) {
	var running, onDisk syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/exe", pid), &running); err != nil {
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

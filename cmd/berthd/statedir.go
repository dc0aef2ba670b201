package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/sirupsen/logrus"

	configv1 "github.com/berth-cri/berth/api/config/v1"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/statedir"
)

// prepareStateDir puts the state dir on a tmpfs where berthd would at
// start (internal/statedir), and logs where it is and why.
func prepareStateDir(log logrus.FieldLogger, cfg *configv1.Config, sockets []string) error {
	placed, err := statedir.Prepare(cfg.StateDir, statedir.Options{Tmpfs: cfg.StateDirTmpfs, Sockets: sockets})
	if err != nil {
		return err
	}
	switch {
	case placed.Mounted:
		log.WithField("state_dir", cfg.StateDir).Info("state dir: mounted a tmpfs on it")
	case !placed.Memory && cfg.StateDirTmpfs:
		log.WithFields(logrus.Fields{"state_dir": cfg.StateDir, "why": placed.Why}).Warn("state dir stays on disk (slower container creates)")
	}
	return nil
}

// prepareStateDirCommand is `berthd prepare-state-dir [--config FILE]`:
// what berthd does to its state dir at start, done before systemd binds
// the CRI socket inside it (ExecStartPre= of hack/systemd/berthd.socket).
// Under socket activation berthd itself cannot mount the tmpfs any more:
// the mount would hide the socket systemd bound there.
func prepareStateDirCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("berthd prepare-state-dir", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "config file (default "+config.DefaultPath+" if it exists)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	loaded, err := config.Load(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "berthd: %v\n", err)
		return 1
	}
	log := logrus.New()
	log.SetOutput(stderr)
	if err := prepareStateDir(log, loaded.Config, nil); err != nil {
		fmt.Fprintf(stderr, "berthd: %v\n", err)
		return 1
	}
	return 0
}

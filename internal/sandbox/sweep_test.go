package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/testsupport"
)

// TestSweepReportsFailures pins issue 17 item 8: the start-up sweep logged
// "removing pod files no sandbox owns" and dropped the error when they
// stayed. Now a failure is logged with the sandbox's id, and only what is
// gone is logged as removed.
func TestSweepReportsFailures(t *testing.T) {
	root, state := t.TempDir(), t.TempDir()
	log, hook := logtest.NewNullLogger()
	m, err := New(Deps{RootDir: root, StateDir: state, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"orphan", "stuck"} {
		os.MkdirAll(filepath.Join(state, "sandboxes", id), 0o755)
	}
	mnt := filepath.Join(state, "sandboxes", "stuck", "mnt")
	os.Mkdir(mnt, 0o755)
	err = unix.Mount("tmpfs", mnt, "tmpfs", 0, "")
	testsupport.Require(t, err == nil, "cannot mount: %v", err)
	defer unix.Unmount(mnt, unix.MNT_DETACH)

	m.sweep(context.Background())

	var stuckErr, stuckRemoved, orphanRemoved bool
	for _, e := range hook.AllEntries() {
		switch {
		case e.Data["sandbox"] == "stuck" && e.Level == logrus.ErrorLevel && e.Data[logrus.ErrorKey] != nil:
			stuckErr = true
		case e.Data["sandbox"] == "stuck" && e.Level == logrus.WarnLevel:
			stuckRemoved = true
		case e.Data["sandbox"] == "orphan" && e.Message == "removed pod files no sandbox owns":
			orphanRemoved = true
		}
	}
	if !stuckErr || stuckRemoved {
		t.Errorf("pod files that stayed: error logged %v, reported removed %v; want an error only", stuckErr, stuckRemoved)
	}
	if !orphanRemoved {
		t.Error("the removed orphan's files not reported")
	}
	if _, err := os.Stat(filepath.Join(state, "sandboxes", "orphan")); !os.IsNotExist(err) {
		t.Errorf("orphan pod files: %v", err)
	}
}

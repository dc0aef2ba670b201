package container

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/testsupport"
)

// busyDir makes dir impossible to remove: a mount inside it (EBUSY).
func busyDir(t *testing.T, dir string) {
	t.Helper()
	mnt := filepath.Join(dir, "mnt")
	os.MkdirAll(mnt, 0o755)
	err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "")
	testsupport.Require(t, err == nil, "cannot mount: %v", err)
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
}

// TestSweepBundlesReportsFailures pins issue 17 item 8: a bundle the sweep
// could not remove was reported (and logged) as removed, and its error
// dropped. Now it is logged with the container's id and not reported.
func TestSweepBundlesReportsFailures(t *testing.T) {
	state := t.TempDir()
	log, hook := logtest.NewNullLogger()
	m := &Manager{d: Deps{StateDir: state, Log: log}}
	for _, id := range []string{"known", "orphan", "stuck"} {
		os.MkdirAll(filepath.Join(state, "containers", id, "bundle"), 0o755)
	}
	busyDir(t, filepath.Join(state, "containers", "stuck", "bundle"))

	swept := m.SweepBundles(map[string]bool{"known": true})
	if !slices.Equal(swept, []string{"orphan"}) {
		t.Errorf("swept %v, want [orphan] only", swept)
	}
	var logged bool
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.ErrorLevel && e.Data["container"] == "stuck" && e.Data[logrus.ErrorKey] != nil {
			logged = true
		}
	}
	if !logged {
		t.Errorf("no error logged with the id of the bundle that stayed: %v", hook.AllEntries())
	}
	if _, err := os.Stat(filepath.Join(state, "containers", "known")); err != nil {
		t.Errorf("a known container's bundle was removed: %v", err)
	}
}

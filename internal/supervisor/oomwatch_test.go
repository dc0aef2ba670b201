package supervisor

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/testsupport"
)

// TestOOMWatch: the count a scope's memory.events showed while it was
// there survives the removal of the cgroup (systemd removes an empty
// scope's at once), and a cgroupfs directory is not watched at all.
func TestOOMWatch(t *testing.T) {
	scope := filepath.Join(t.TempDir(), "berth-c1.scope")
	os.Mkdir(scope, 0o755)
	events := filepath.Join(scope, "memory.events")
	write := func(kills string) {
		t.Helper()
		if err := os.WriteFile(events, []byte("low 0\nhigh 0\nmax 3\noom 1\noom_kill "+kills+"\noom_group_kill 0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("0")
	w := watchOOM(scope, 1, nil)
	write("2") // the kernel notifies a modification, as this write does
	testsupport.PollUntil(t, "the watched count", 5*time.Second, func() bool { return w.count.Load() == 2 })
	if err := os.RemoveAll(scope); err != nil {
		t.Fatal(err)
	}
	if got := max(w.stop(), oomKills(scope)); got != 2 {
		t.Errorf("kills after the cgroup went: %d, want 2", got)
	}
	if got := w.stop(); got != 2 {
		t.Errorf("second stop: %d", got)
	}

	plain := t.TempDir()
	os.WriteFile(filepath.Join(plain, "memory.events"), []byte("oom_kill 1\n"), 0o644)
	if w := watchOOM(plain, 1, nil); w.f != nil || w.stop() != 0 {
		t.Error("a cgroupfs directory is watched")
	}
}

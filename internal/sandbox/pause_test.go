package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/proctree"
	"github.com/berth-cri/berth/internal/testsupport"
)

// TestNamespacesProvePause: namespace paths are built from the pause's pid
// only while that pid still names the pause (issue 17: a dead pause's pid,
// once reused, would have had containers join an unrelated process's
// namespaces).
func TestNamespacesProvePause(t *testing.T) {
	self := os.Getpid()
	selfStart, ok := proctree.StartTime(self)
	if !ok {
		t.Fatal("no start time for this process")
	}
	// A zombie: ended, not reaped yet.
	zombie := exec.Command("true")
	if err := zombie.Start(); err != nil {
		t.Fatal(err)
	}
	zpid := zombie.Process.Pid
	waitZombie(t, zpid)
	// A pid nobody has: the zombie once reaped.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	defer zombie.Wait()

	for _, tc := range []struct {
		name       string
		pid        int
		start      uint64
		wantErr    bool
		wantPIDDir string
	}{
		{"the pause itself", self, selfStart, false, fmt.Sprintf("/proc/%d/ns/pid", self)},
		{"no pause recorded", 0, 0, false, ""},
		{"pid reused by another process", self, selfStart + 1, true, ""},
		{"start time never recorded", self, 0, true, ""},
		{"pause ended, not reaped", zpid, 1, true, ""},
		{"pause ended and reaped", gone.Process.Pid, 1, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Sandbox{ID: "sb", NetNS: "/run/netns/sb", PausePID: tc.pid, PauseStartTime: tc.start, config: &runtimeapi.PodSandboxConfig{}}
			ns, err := s.Namespaces()
			if tc.wantErr != (err != nil) || (err != nil && !errors.Is(err, errdefs.ErrFailedPrecondition)) {
				t.Fatalf("error %v, want one: %v (FailedPrecondition)", err, tc.wantErr)
			}
			if ns.Net != s.NetNS || ns.PID != tc.wantPIDDir {
				t.Errorf("namespaces %+v, want net %s and pid %q", ns, s.NetNS, tc.wantPIDDir)
			}
			if err != nil && (ns.IPC != "" || ns.UTS != "" || ns.User != "") {
				t.Errorf("paths built from an unproven pid: %+v", ns)
			}
		})
	}
}

// waitZombie waits until pid has ended but is not reaped.
func waitZombie(t *testing.T, pid int) {
	t.Helper()
	testsupport.PollUntil(t, fmt.Sprintf("process %d to end", pid), 5*time.Second, func() bool {
		_, started := proctree.StartTime(pid)
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		return !started && err == nil
	})
}

type recordedEvents []string

func (r *recordedEvents) SandboxEvent(kind EventKind, s *Sandbox) {
	*r = append(*r, fmt.Sprintf("%d %s %s", kind, s.ID, s.State))
}

// TestPauseEnded: the end of a ready sandbox's pause makes it not ready
// and is published as the sandbox's stopped event; a sandbox still being
// created (its rollback owns it) or removed is left alone.
func TestPauseEnded(t *testing.T) {
	m, err := New(Deps{RootDir: t.TempDir(), Log: logrus.New()})
	if err != nil {
		t.Fatal(err)
	}
	var events recordedEvents
	m.SetEvents(&events)
	for _, s := range []*Sandbox{
		{ID: "ready", Name: "a", State: StateReady},
		{ID: "stopped", Name: "b", State: StateNotReady},
		{ID: "creating", Name: "c", State: StateCreating},
	} {
		s.config = &runtimeapi.PodSandboxConfig{}
		if err := m.t.Put(s); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"ready", "stopped", "creating", "removed"} {
		m.pauseEnded(id, "exited")
	}
	if s, _ := m.Get("ready"); s.State != StateNotReady {
		t.Errorf("ready sandbox is %s after its pause ended", s.State)
	}
	if s := m.t.Current("creating"); s.State != StateCreating {
		t.Errorf("sandbox being created is %s", s.State)
	}
	want := recordedEvents{
		fmt.Sprintf("%d ready notready", EventStopped),
		fmt.Sprintf("%d stopped notready", EventStopped),
	}
	if fmt.Sprint(events) != fmt.Sprint(want) {
		t.Errorf("events %q, want %q", events, want)
	}
}

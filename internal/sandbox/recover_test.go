package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/testsupport/fakes"
)

// TestRecover starts a manager on records an earlier berthd left in each
// state, with the supervisor in each state, and checks what recovery made
// of them.
func TestRecover(t *testing.T) {
	pause := fakes.NewImage(pauseRef).ID.String()
	for _, tc := range []struct {
		name   string
		state  State
		netns  bool             // a netns was pinned
		pause  supv1.Status     // "" : the supervisor does not know it
		setup  func(h *harness) // failures to inject
		want   State            // "" : the sandbox is gone
		noTime bool             // the record predates pause start times
	}{
		{name: "creating: rolled back", state: StateCreating, netns: true, pause: supv1.StatusRunning},
		{name: "creating, pause never made: rolled back", state: StateCreating, netns: true},
		{name: "creating, rollback fails: not ready", state: StateCreating, netns: true, pause: supv1.StatusRunning, want: StateNotReady,
			setup: func(h *harness) { h.rec.Fail("Snapshots.RemoveRootfs", errInjected) }},
		{name: "ready, pause running: ready", state: StateReady, netns: true, pause: supv1.StatusRunning, want: StateReady},
		{name: "ready, pause start time unrecorded: recorded", state: StateReady, pause: supv1.StatusRunning, want: StateReady, noTime: true},
		{name: "ready, pause exited: not ready", state: StateReady, netns: true, pause: supv1.StatusStopped, want: StateNotReady},
		{name: "ready, pause unknown: not ready", state: StateReady, netns: true, want: StateNotReady},
		{name: "ready, supervisor fails: not ready", state: StateReady, pause: supv1.StatusRunning, want: StateNotReady,
			setup: func(h *harness) { h.rec.Fail("Supervisor.State", errInjected) }},
		{name: "not ready: kept", state: StateNotReady, want: StateNotReady},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			s := h.plant(t, "sb1", tc.state, tc.netns)
			if tc.noTime {
				s.PauseStartTime = 0
				h.records.Put(s.ID, s)
			}
			if tc.pause != "" {
				h.sup.Put(s.ID, tc.pause, 0)
			}
			if tc.setup != nil {
				tc.setup(h)
			}
			h.m = h.open(t)
			if err := h.m.Recover(context.Background()); err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				h.assertGone(t)
				if tc.netns && !h.rec.Called("Network.Teardown sb1") {
					t.Error("no CNI DEL for an interrupted create's network")
				}
				return
			}
			got, err := h.m.Get("sb1")
			if err != nil {
				t.Fatal(err)
			}
			if got.State != tc.want || h.records.Get("sb1").State != tc.want {
				t.Errorf("sandbox %s, record %s; want %s", got.State, h.records.Get("sb1").State, tc.want)
			}
			if held := h.images.Holders(pause); len(held) != 1 || held[0] != holder("sb1") {
				t.Errorf("pause image holders %v: want the sandbox's claim back", held)
			}
			if tc.noTime && got.PauseStartTime == 0 {
				t.Error("the running pause's start time not recorded")
			}
		})
	}
}

// plant writes the record of a sandbox in state as an earlier berthd
// would have, with its rootfs, files and netns pin.
func (h *harness) plant(t *testing.T, id string, state State, netns bool) *Sandbox {
	t.Helper()
	cfg := podConfig("p", !netns)
	b, err := protojson.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &Sandbox{ID: id, Name: podName(cfg.GetMetadata()), ConfigJSON: b, Runtime: "runc", State: state,
		Image: fakes.NewImage(pauseRef).ID.String(), PausePID: os.Getpid(), PauseStartTime: 1, Delivered: true}
	if netns {
		s.NetNS = filepath.Join(h.state, "netns", id)
		h.netns.Add(filepath.Join(h.state, "netns"), id)
		if state != StateCreating {
			s.NetworkReady = true
			s.config = cfg
			pod, err := h.m.networkPod(s)
			if err != nil {
				t.Fatal(err)
			}
			h.net.Setup(context.Background(), pod)
		}
	}
	h.snaps.PrepareRootfs(id, nil)
	os.MkdirAll(h.m.podDir(id), 0o711)
	if err := h.records.Put(id, s); err != nil {
		t.Fatal(err)
	}
	h.rec.Reset()
	return s
}

func TestRecoverDropsUnreadableRecords(t *testing.T) {
	h := newHarness(t)
	fakes.CheckRecoverDrops(t, h.records, func() error { return h.open(t).Recover(context.Background()) })
}

// TestRecoverSweeps: netns pins and pod directories no record owns are
// removed, a pin's network torn down first; a pin whose teardown fails is
// kept for the next start.
func TestRecoverSweeps(t *testing.T) {
	h := newHarness(t)
	dir := filepath.Join(h.state, "netns")
	h.netns.Add(dir, "orphan")
	h.netns.Add(dir, "stuck")
	os.MkdirAll(filepath.Join(h.state, "sandboxes", "orphan"), 0o711)
	h.rec.FailIf("Network.Teardown", errInjected, func(args []string) bool { return args[0] == "stuck" })
	if err := h.m.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if pins := h.netns.Pins(); len(pins) != 1 || filepath.Base(pins[0]) != "stuck" {
		t.Errorf("pins %v, want the stuck one only", pins)
	}
	if !h.rec.Called("Network.Teardown orphan") {
		t.Error("an orphan pin removed without CNI DEL")
	}
	if _, err := os.Stat(filepath.Join(h.state, "sandboxes", "orphan")); !os.IsNotExist(err) {
		t.Errorf("orphan pod directory: %v", err)
	}
	h.rec.Clear()
	h.rec.Fail("NetNS.List", errInjected)
	h.rec.Fail("NetNS.Remove", errInjected)
	if err := h.m.Recover(context.Background()); err != nil {
		t.Errorf("a failed sweep fails recovery: %v", err)
	}
}

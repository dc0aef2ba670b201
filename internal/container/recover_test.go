package container

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/atomicfile"
	"github.com/berth-cri/berth/internal/testsupport/fakes"
)

// TestRecover starts a manager on a record an earlier berthd left in each
// state, with the supervisor in each state, and checks what recovery made
// of it.
func TestRecover(t *testing.T) {
	for _, tc := range []struct {
		name     string
		state    State
		restore  bool         // created from a checkpoint, restored at start
		sup      supv1.Status // "": the supervisor does not know it
		setup    func(h *harness)
		want     State // "": rolled back
		wantExit int32
	}{
		{name: "creating: rolled back", state: StateCreating, sup: supv1.StatusCreated},
		{name: "creating, its process already started: killed, rolled back", state: StateCreating, sup: supv1.StatusRunning},
		{name: "creating, supervisor never asked: rolled back", state: StateCreating},
		{name: "creating, running, kill fails: kept", state: StateCreating, sup: supv1.StatusRunning, want: StateCreating,
			setup: func(h *harness) { h.rec.Fail("Supervisor.Kill", errInjected) }},
		{name: "creating, running, delete after kill fails: kept", state: StateCreating, sup: supv1.StatusRunning, want: StateCreating,
			setup: func(h *harness) {
				deletes := 0
				h.rec.FailIf("Supervisor.Delete", errInjected, func([]string) bool { deletes++; return deletes > 1 })
			}},
		{name: "created, still created", state: StateCreated, sup: supv1.StatusCreated, want: StateCreated},
		{name: "created, started while berthd was down", state: StateCreated, sup: supv1.StatusRunning, want: StateRunning},
		{name: "created, started and exited while down", state: StateCreated, sup: supv1.StatusStopped, want: StateExited, wantExit: 7},
		{name: "created, lost (reboot)", state: StateCreated, want: StateExited, wantExit: UnknownExitCode},
		{name: "created from a checkpoint, not restored yet", state: StateCreated, restore: true, want: StateCreated},
		{name: "running, still running", state: StateRunning, sup: supv1.StatusRunning, want: StateRunning},
		{name: "running, exited while down", state: StateRunning, sup: supv1.StatusStopped, want: StateExited, wantExit: 7},
		{name: "running, lost (reboot)", state: StateRunning, want: StateExited, wantExit: UnknownExitCode},
		{name: "running, supervisor unreachable: left as it is", state: StateRunning, sup: supv1.StatusRunning, want: StateRunning,
			setup: func(h *harness) { h.rec.Fail("Supervisor.State", errInjected) }},
		{name: "exited: kept", state: StateExited, want: StateExited, wantExit: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			c := h.plant(t, "c1", tc.state, tc.restore, tc.sup)
			if tc.setup != nil {
				tc.setup(h)
			}
			if h.m = h.open(t); h.m.Recover(context.Background()) != nil {
				t.Fatal("recovery failed")
			}
			if tc.want == "" {
				h.assertNoContainers(t)
				if h.sup.Has(c.ID) {
					t.Errorf("supervisor still has it: %s", h.sup.Status(c.ID))
				}
				return
			}
			if tc.want == StateCreating {
				// The rollback failed: the record stays, hidden, for the
				// next start to roll back.
				if r := h.records.Get(c.ID); r == nil || r.State != StateCreating {
					t.Errorf("record %+v, want it kept", r)
				}
				if _, err := h.m.Get(c.ID); err == nil {
					t.Error("a container being rolled back is visible")
				}
				return
			}
			got, err := h.m.Get(c.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != tc.want || h.records.Get(c.ID).State != tc.want || got.ExitCode != tc.wantExit {
				t.Errorf("container %s (exit %d), record %s; want %s (exit %d)", got.State, got.ExitCode, h.records.Get(c.ID).State, tc.want, tc.wantExit)
			}
			if held := h.images.Holders(c.ImageID); len(held) != 1 || held[0] != holder(c.ID) {
				t.Errorf("image holders %v: want the container's claim back", held)
			}
			if tc.want == StateRunning && tc.setup == nil {
				h.sup.Exit(c.ID, 2) // watched again
				waitState(t, h, c.ID, StateExited)
			}
		})
	}
}

// plant writes the record of a container in state as an earlier berthd
// would have, with its rootfs, and has the supervisor know it in sup
// (exit code 7 if stopped) unless "".
func (h *harness) plant(t *testing.T, id string, state State, restore bool, sup supv1.Status) *Container {
	t.Helper()
	cfg := containerConfig("c")
	b, err := protojson.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &Container{ID: id, SandboxID: h.pod, Name: "c_pod_default_uid_0", ConfigJSON: b, Runtime: "runc",
		ImageID: fakes.NewImage(appRef).ID.String(), State: state, Delivered: true}
	if state == StateExited {
		c.ExitCode = 1
	}
	if restore {
		c.Restore = t.TempDir()
	}
	h.snaps.PrepareRootfs(id, nil)
	if sup != "" {
		h.sup.Put(id, sup, 7)
	}
	if err := h.records.Put(id, c); err != nil {
		t.Fatal(err)
	}
	h.rec.Reset()
	return c
}

func TestRecoverDropsUnreadableRecords(t *testing.T) {
	h := newHarness(t)
	fakes.CheckRecoverDrops(t, h.records, func() error { return h.open(t).Recover(context.Background()) })
}

// TestStartRestored: a container created from a checkpoint is created in
// the supervisor only at start, by a restore; its unpacked checkpoint goes
// with it.
func TestStartRestored(t *testing.T) {
	h := newHarness(t)
	c := h.plant(t, "c1", StateCreated, true, "")
	h.m = h.open(t)
	if err := h.m.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.rec.Fail("Supervisor.Restore", errInjected)
	if err := h.m.Start(context.Background(), c.ID); !errors.Is(err, errInjected) {
		t.Fatalf("Start: %v", err)
	}
	h.rec.Clear()
	if err := h.m.Start(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	if got, _ := h.m.Get(c.ID); got.State != StateRunning || !h.rec.Called("Supervisor.Restore "+c.ID) {
		t.Errorf("restored container %s, calls %v", got.State, h.rec.Calls())
	}
	if err := h.m.Remove(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Restore); !os.IsNotExist(err) {
		t.Errorf("unpacked checkpoint left: %v", err)
	}
	h.assertNoContainers(t)
}

// TestRecordFiles: on disk, a created container's config is a plain JSON
// file written once, its status a small record file that its state changes
// rewrite; a new berthd reads both back.
func TestRecordFiles(t *testing.T) {
	h := newHarness(t)
	root := t.TempDir()
	open := func() *Manager {
		m, err := New(Deps{Config: h.cfg, Images: h.images, Snapshots: h.snaps, Sandboxes: h.sb, Supervisor: h.sup,
			RootDir: root, StateDir: h.state, Log: fakes.NullLog()})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := open()
	id, err := m.Create(context.Background(), h.pod, containerConfig("c"), podConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(root, "containers", id+".config.json")
	cfg, err := os.ReadFile(cfgPath)
	var fields map[string]any
	if err != nil || json.Unmarshal(cfg, &fields) != nil || fields["image_id"] == nil || fields["state"] != nil {
		t.Fatalf("config file %s: %v", cfg, err)
	}
	// The CRI config shows as JSON, not base64.
	if crcfg, ok := fields["config"].(map[string]any); !ok || crcfg["metadata"] == nil {
		t.Fatalf("config file %s: %v", cfg, err)
	}
	if err := m.Start(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(cfgPath); string(again) != string(cfg) {
		t.Error("the config file was rewritten by a start")
	}
	status, err := atomicfile.ReadRecord(filepath.Join(root, "containers", id+".json"))
	if err != nil || strings.Contains(string(status), `"config"`) || !strings.Contains(string(status), `"running"`) {
		t.Errorf("status record %s: %v", status, err)
	}
	m2 := open()
	if err := m2.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, err := m2.Get(id)
	if err != nil || c.State != StateRunning || c.Config().GetMetadata().GetName() != "c" || c.ImageID == "" {
		t.Fatalf("recovered %+v, %v", c, err)
	}
	h.sup.Exit(id, 0)
	waitStateOf(t, m2, id, StateExited)
}

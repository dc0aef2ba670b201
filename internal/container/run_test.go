package container

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
)

func TestStart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(h *harness)
	}{
		{"an NRI plugin refuses", func(h *harness) { h.rec.Fail("NRI.StartContainer", errInjected) }},
		{"supervisor start", func(h *harness) { h.rec.Fail("Supervisor.Start", errInjected) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			id := h.create(t, "c")
			tc.setup(h)
			if err := h.m.Start(context.Background(), id); !errors.Is(err, errInjected) {
				t.Fatalf("Start: %v", err)
			}
			if c, _ := h.m.Get(id); c.State != StateCreated || h.records.Get(id).State != StateCreated {
				t.Errorf("container %s after a failed start, want created", c.State)
			}
			h.rec.Clear()
			if err := h.m.Start(context.Background(), id); err != nil {
				t.Fatalf("retried Start: %v", err)
			}
		})
	}
	t.Run("record of running", func(t *testing.T) {
		h := newHarness(t)
		id := h.create(t, "c")
		h.records.FailOnce(errInjected, func(c *Container) bool { return c.State == StateRunning })
		if err := h.m.Start(context.Background(), id); !errors.Is(err, errInjected) {
			t.Fatalf("Start: %v", err)
		}
	})
	t.Run("runs, then exits", func(t *testing.T) {
		h := newHarness(t)
		id := h.create(t, "c")
		if err := h.m.Start(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		c, _ := h.m.Get(id)
		if c.State != StateRunning || c.Pid == 0 || c.StartedAt == 0 || !h.rec.Called("NRI.PostStartContainer "+id) {
			t.Errorf("started container %+v", c)
		}
		h.sup.Exit(id, 3)
		c = waitState(t, h, id, StateExited)
		if c.ExitCode != 3 || h.records.Get(id).ExitCode != 3 {
			t.Errorf("exit code %d, want 3", c.ExitCode)
		}
		want := fmt.Sprint([]string{fmt.Sprintf("%d %s running", EventStarted, id), fmt.Sprintf("%d %s exited", EventStopped, id)})
		if fmt.Sprint(h.events.All()) != want {
			t.Errorf("events %v, want %v", h.events.All(), want)
		}
		if err := h.m.Start(context.Background(), id); !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Errorf("start of an exited container: %v, want FailedPrecondition", err)
		}
	})
	t.Run("exits at once", func(t *testing.T) {
		h := newHarness(t)
		id := h.create(t, "c")
		h.sup.ExitAtStart = map[string]int32{id: 0}
		if err := h.m.Start(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		if c, _ := h.m.Get(id); c.State != StateExited || !h.rec.Called("NRI.StopContainer "+id) {
			t.Errorf("container %s, want exited and NRI told", c.State)
		}
	})
	t.Run("lost by the supervisor", func(t *testing.T) {
		h := newHarness(t)
		id := h.start(t, "c")
		h.sup.Drop(id)
		if c := waitState(t, h, id, StateExited); c.ExitCode != UnknownExitCode || c.Reason != ReasonUnknown {
			t.Errorf("lost container: exit %d %q, want %d %q", c.ExitCode, c.Reason, UnknownExitCode, ReasonUnknown)
		}
	})
	t.Run("unknown container", func(t *testing.T) {
		h := newHarness(t)
		if err := h.m.Start(context.Background(), "nothere"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("Start: %v, want NotFound", err)
		}
	})
}

// waitState polls until container id is in state.
func waitState(t *testing.T, h *harness, id string, state State) *Container {
	t.Helper()
	return waitStateOf(t, h.m, id, state)
}

// waitStateOf polls until container id of m is in state.
func waitStateOf(t *testing.T, m *Manager, id string, state State) *Container {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := m.Get(id)
		if err == nil && c.State == state {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: %v, %v; want %s", id, c, err, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStop(t *testing.T) {
	for _, tc := range []struct {
		name     string
		timeout  time.Duration
		setup    func(h *harness, id string)
		wantErr  error  // nil: stopped
		wantExit int32  // of a stopped container
		signal   string // the first signal sent
	}{
		{name: "graceful", timeout: time.Second, wantExit: 128 + int32(syscall.SIGTERM), signal: "15"},
		{name: "at once", wantExit: 128 + int32(syscall.SIGKILL), signal: "9"},
		{name: "graceful, signal fails", timeout: time.Second, wantErr: errInjected, signal: "15",
			setup: func(h *harness, id string) { h.rec.Fail("Supervisor.Kill", errInjected) }},
		{name: "graceful, wait fails: killed", timeout: time.Second, wantExit: 128 + int32(syscall.SIGTERM), signal: "15",
			setup: func(h *harness, id string) {
				h.rec.FailIf("Supervisor.Wait", errInjected, func([]string) bool { return !h.rec.Called("Supervisor.Kill " + id + " 9") })
			}},
		{name: "kill fails", wantErr: errInjected, signal: "9", setup: func(h *harness, id string) { h.rec.Fail("Supervisor.Kill", errInjected) }},
		{name: "kill, wait fails", wantErr: errInjected, signal: "9", setup: func(h *harness, id string) { h.rec.Fail("Supervisor.Wait", errInjected) }},
		{name: "lost by the supervisor", wantExit: UnknownExitCode, signal: "9", setup: func(h *harness, id string) {
			h.rec.FailIf("Supervisor.Kill", fmt.Errorf("gone: %w", errdefs.ErrNotFound), nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			id := h.start(t, "c")
			if tc.setup != nil {
				tc.setup(h, id)
			}
			err := h.m.Stop(context.Background(), id, tc.timeout)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("Stop: %v, want %v", err, tc.wantErr)
			}
			if !h.rec.Called("Supervisor.Kill " + id + " " + tc.signal) {
				t.Errorf("calls %v, want signal %s first", h.rec.Calls(), tc.signal)
			}
			c, _ := h.m.Get(id)
			if tc.wantErr != nil {
				// No exit recorded while the process still runs.
				if c.State != StateRunning && h.sup.Status(id) == supv1.StatusRunning {
					t.Errorf("container %s after a failed stop, its process still running", c.State)
				}
				return
			}
			if c.State != StateExited || c.ExitCode != tc.wantExit || h.records.Get(id).State != StateExited {
				t.Errorf("container %s exit %d, want exited %d", c.State, c.ExitCode, tc.wantExit)
			}
			if n := h.rec.Count("NRI.StopContainer " + id); n != 1 {
				t.Errorf("NRI told %d times of the stop, want once", n)
			}
			if err := h.m.Stop(context.Background(), id, tc.timeout); err != nil {
				t.Errorf("second Stop: %v", err)
			}
		})
	}
	t.Run("created or unknown: nothing to do", func(t *testing.T) {
		h := newHarness(t)
		id := h.create(t, "c")
		for _, id := range []string{id, "nothere"} {
			if err := h.m.Stop(context.Background(), id, time.Second); err != nil {
				t.Errorf("Stop %s: %v", id, err)
			}
		}
		if len(h.rec.Calls()) != 0 {
			t.Errorf("calls %v", h.rec.Calls())
		}
	})
}

func TestRemove(t *testing.T) {
	for _, tc := range []struct {
		name    string
		running bool
		setup   func(h *harness)
	}{
		{name: "kill fails", running: true, setup: func(h *harness) { h.rec.Fail("Supervisor.Kill", errInjected) }},
		{name: "supervisor delete", setup: func(h *harness) { h.rec.Fail("Supervisor.Delete", errInjected) }},
		{name: "rootfs removal", setup: func(h *harness) { h.rec.Fail("Snapshots.RemoveRootfs", errInjected) }},
		{name: "record removal", setup: func(h *harness) { h.rec.Fail("Records.Delete", errInjected) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			id := h.create(t, "c")
			if tc.running {
				id = h.start(t, "d")
			}
			tc.setup(h)
			if err := h.m.Remove(context.Background(), id); !errors.Is(err, errInjected) {
				t.Fatalf("Remove: %v", err)
			}
			if _, err := h.m.Get(id); err != nil {
				t.Errorf("a container whose removal failed is gone: %v", err)
			}
			h.rec.Clear()
			if err := h.m.RemovePod(context.Background(), h.pod); err != nil {
				t.Fatalf("retried removal: %v", err)
			}
			h.assertNoContainers(t)
			if !h.rec.Called("NRI.RemoveContainer " + id) {
				t.Error("NRI not told of the removal")
			}
		})
	}
	t.Run("running, released images kept going", func(t *testing.T) {
		h := newHarness(t)
		id := h.start(t, "c")
		h.rec.Fail("Images.Release", errInjected) // only logged
		if err := h.m.StopPod(context.Background(), h.pod); err != nil {
			t.Fatal(err)
		}
		if err := h.m.Remove(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		if _, err := h.m.Get(id); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("removed container: %v", err)
		}
		if ev := h.events.All(); len(ev) == 0 || ev[len(ev)-1] != fmt.Sprintf("%d %s exited", EventDeleted, id) {
			t.Errorf("events %v, want the deletion last", ev)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		h := newHarness(t)
		if err := h.m.Remove(context.Background(), "nothere"); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
}

func TestUpdateAndReopenGuards(t *testing.T) {
	h := newHarness(t)
	id := h.create(t, "c")
	if err := h.m.UpdateResources(context.Background(), id, nil); err != nil {
		t.Errorf("update of a created container: %v", err)
	}
	if err := h.m.ReopenLog(context.Background(), id); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("reopen the log of a created container: %v, want FailedPrecondition", err)
	}
	h.rec.Fail("NRI.UpdateContainer", errInjected)
	if err := h.m.UpdateResources(context.Background(), id, nil); !errors.Is(err, errInjected) {
		t.Errorf("update an NRI plugin refuses: %v", err)
	}
	if err := h.m.ApplyResources(context.Background(), id, nil); err != nil {
		t.Errorf("apply (not relayed to NRI): %v", err)
	}
	h.rec.Clear()
	h.rec.Fail("Supervisor.UpdateResources", errInjected)
	if err := h.m.ApplyResources(context.Background(), id, nil); !errors.Is(err, errInjected) {
		t.Errorf("update the supervisor fails: %v", err)
	}
	h.rec.Clear()
	if err := h.m.Start(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if err := h.m.ReopenLog(context.Background(), id); err != nil {
		t.Errorf("reopen the log of a running container: %v", err)
	}
	if err := h.m.Stop(context.Background(), id, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.m.UpdateResources(context.Background(), id, nil); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("update of an exited container: %v, want FailedPrecondition", err)
	}
}

// TestTransitions pins the state machine: a move added or dropped is a
// decision to make here too.
func TestTransitions(t *testing.T) {
	want := []string{"created -> exited", "created -> running", "creating -> created", "running -> exited"}
	if got := transitions.Moves(); !slices.Equal(got, want) {
		t.Errorf("moves %q, want %q", got, want)
	}
}

// TestTransitionRefusedUpdate: the record table applies the rule to every
// update: an exited container cannot be made running again, in memory or
// on disk.
func TestTransitionRefusedUpdate(t *testing.T) {
	h := newHarness(t)
	id := h.start(t, "c")
	if err := h.m.Stop(context.Background(), id, 0); err != nil {
		t.Fatal(err)
	}
	c := h.m.t.Current(id)
	if err := h.m.t.Update(c, func(c *Container) { c.State, c.Pid = StateRunning, 1 }); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("exited -> running: %v, want FailedPrecondition", err)
	}
	if got, _ := h.m.Get(id); got.State != StateExited || h.records.Get(id).State != StateExited {
		t.Errorf("container %s, record %s after a refused update", got.State, h.records.Get(id).State)
	}
}

package supervisor_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/testsupport"
)

// TestUpgradeKeepsExactExitAndEveryLogLine: a container writes a numbered
// line every 10 ms through an in-place upgrade; its exit stays exact and the
// log holds every line exactly once.
func TestUpgradeKeepsExactExitAndEveryLogLine(t *testing.T) {
	c, _ := startSupervisor(t)
	ctx := testCtx(t)
	logPath := filepath.Join(t.TempDir(), "c.log")
	st := run(t, c, "upg", v1.CreateRequest{Bundle: bundle(t, "upg", counterScript), LogPath: logPath})
	waitLines(t, logPath, 20)
	before, err := c.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after, err := c.Upgrade(ctx)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	if after.Pid != before.Pid || after.BootID == before.BootID {
		t.Fatalf("upgrade: before %+v after %+v", before, after)
	}
	n := len(messages(readLog(t, logPath), "stdout"))
	waitLines(t, logPath, n+20)
	now, err := c.State(ctx, "upg")
	if err != nil || now.Status != v1.StatusRunning || now.Pid != st.Pid {
		t.Fatalf("after upgrade: %+v %v", now, err)
	}
	if err := c.Kill(ctx, "upg", syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	e := wait(t, c, "upg")
	if e.ExitCode != 137 || e.Signal != 9 || e.Reason != v1.ReasonError {
		t.Fatalf("exit after upgrade %+v, want exact 137", e)
	}
	checkSequence(t, messages(readLog(t, logPath), "stdout"))
}

// TestSupervisorKilled: kill -9 of the supervisor leaves the container
// running; a new supervisor re-adopts it, keeps its log going, and reports
// the exit it could not observe as 255/Unknown.
func TestSupervisorKilled(t *testing.T) {
	c, stateDir := startSupervisor(t)
	ctx := testCtx(t)
	logPath := filepath.Join(t.TempDir(), "c.log")
	st := run(t, c, "crash", v1.CreateRequest{Bundle: bundle(t, "crash", counterScript), LogPath: logPath})
	waitLines(t, logPath, 10)
	v, err := c.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(v.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, v.Pid)
	if !pidAlive(st.Pid) {
		t.Fatal("container died with its supervisor")
	}
	c2 := ensure(t, stateDir)
	v2, err := c2.Version(ctx)
	if err != nil || v2.Pid == v.Pid {
		t.Fatalf("no new supervisor: %+v %v", v2, err)
	}
	now, err := c2.State(ctx, "crash")
	if err != nil || now.Status != v1.StatusRunning || now.Pid != st.Pid {
		t.Fatalf("re-adopted state %+v %v", now, err)
	}
	n := len(messages(readLog(t, logPath), "stdout"))
	waitLines(t, logPath, n+10) // the output flows again
	if err := c2.Kill(ctx, "crash", syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	e := wait(t, c2, "crash")
	if e.ExitCode != 255 || e.Reason != v1.ReasonUnknown || e.FinishedAt == 0 {
		t.Fatalf("exit of a re-adopted container %+v, want 255/Unknown", e)
	}
	// The exit is durable: a further restart reports the same.
	st2, err := c2.State(ctx, "crash")
	if err != nil || st2.Exit == nil || *st2.Exit != *e {
		t.Fatalf("state %+v %v", st2, err)
	}
}

func TestOCIRuntime(t *testing.T) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc not installed (apt-get install runc)")
	}
	c, _ := startSupervisor(t)
	ctx := testCtx(t)
	logPath := filepath.Join(t.TempDir(), "c.log")
	root := t.TempDir()
	req := v1.CreateRequest{Kind: v1.RuntimeOCI, RuntimePath: runc, RuntimeRoot: root, LogPath: logPath}
	req.Bundle = bundle(t, "oci", "echo from-runc; echo oops >&2; exit 3")
	run(t, c, "oci", req)
	if e := wait(t, c, "oci"); e.ExitCode != 3 || e.Reason != v1.ReasonError {
		t.Fatalf("exit %+v", e)
	}
	recs := readLog(t, logPath)
	if out, errs := messages(recs, "stdout"), messages(recs, "stderr"); len(out) != 1 || out[0] != "from-runc" || len(errs) != 1 || errs[0] != "oops" {
		t.Fatalf("log %+v", recs)
	}
	// Kill by signal through the runtime binary.
	req.Bundle, req.LogPath = bundle(t, "oci2", "exec sleep 100", hostPID), ""
	run(t, c, "oci2", req)
	if err := c.Kill(ctx, "oci2", syscall.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	if e := wait(t, c, "oci2"); e.ExitCode != 143 {
		t.Fatalf("exit %+v", e)
	}
	for _, id := range []string{"oci", "oci2", "oci"} {
		if err := c.Delete(ctx, id); err != nil {
			t.Fatalf("delete %s: %v", id, err)
		}
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Fatalf("runc state left: %v", entries)
	}
}

// TestNoLeaks: 50 create/start/exit/delete cycles leave the supervisor's
// descriptor and goroutine counts where they were.
func TestNoLeaks(t *testing.T) {
	c, _ := startSupervisor(t)
	ctx := testCtx(t)
	b := bundle(t, "leak", "echo hi")
	logPath := filepath.Join(t.TempDir(), "c.log")
	cycle := func() {
		run(t, c, "leak", v1.CreateRequest{Bundle: b, LogPath: logPath})
		if e := wait(t, c, "leak"); e.ExitCode != 0 {
			t.Fatalf("exit %+v", e)
		}
		if err := c.Delete(ctx, "leak"); err != nil {
			t.Fatal(err)
		}
	}
	cycle() // warm up lazily created runtime state
	before, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		cycle()
	}
	// libcontainer drops a pidfd-backed os.Process per container that only
	// a GC cleanup closes, asynchronously: poll for the count to settle.
	var after *v1.Stats
	deadline := time.Now().Add(testsupport.Slow(5 * time.Second))
	for {
		if after, err = c.Stats(ctx); err != nil {
			t.Fatal(err)
		}
		if after.OpenFDs <= before.OpenFDs || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if after.OpenFDs > before.OpenFDs || after.Goroutines > before.Goroutines+2 || after.Containers != 0 {
		t.Fatalf("leak: before %+v after %+v", before, after)
	}
	if n := len(messages(readLog(t, logPath), "stdout")); n != 51 {
		t.Fatalf("log has %d lines, want 51", n)
	}
}

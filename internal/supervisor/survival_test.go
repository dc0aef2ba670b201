package supervisor_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/testsupport"
)

// TestUpgradeKeepsExactExitAndEveryLogLine: a container writes a numbered
// line every 10 ms through an in-place upgrade, then through a crash of
// the upgraded supervisor (during which it is killed); its exit stays
// exact and the log holds every line exactly once.
func TestUpgradeKeepsExactExitAndEveryLogLine(t *testing.T) {
	c, stateDir := startSupervisor(t)
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
	if after.Pid != before.Pid || after.BootID == before.BootID || after.KeeperPid == 0 || after.KeeperPid != before.KeeperPid {
		t.Fatalf("upgrade: before %+v after %+v", before, after)
	}
	n := len(messages(readLiveLog(t, logPath), "stdout"))
	waitLines(t, logPath, n+20)
	now, err := c.State(ctx, "upg")
	if err != nil || now.Status != v1.StatusRunning || now.Pid != st.Pid {
		t.Fatalf("after upgrade: %+v %v", now, err)
	}
	// The upgraded supervisor still has its keeper's channel: a crash now
	// loses nothing either.
	end := testsupport.CrashSupervisor(t, stateDir, after.KeeperPid, after.Pid)
	time.Sleep(300 * time.Millisecond)
	if err := syscall.Kill(st.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	end()
	c = ensure(t, stateDir)
	e := wait(t, c, "upg")
	if e.ExitCode != 137 || e.Signal != 9 || e.Reason != v1.ReasonError {
		t.Fatalf("exit after upgrade %+v, want exact 137", e)
	}
	checkSequence(t, messages(readLog(t, logPath), "stdout"))
}

// TestSupervisorKilled: kill -9 of the supervisor leaves the container
// running; the keeper starts a new supervisor at once, which re-adopts
// the container, keeps its log going and reports its later exit exactly
// (the keeper reaped it and recorded the status).
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
	if v.KeeperPid == 0 {
		t.Fatalf("no keeper above the supervisor: %+v", v)
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
	if err != nil || v2.Pid == v.Pid || v2.KeeperPid != v.KeeperPid {
		t.Fatalf("no new supervisor under the same keeper: %+v %v", v2, err)
	}
	now, err := c2.State(ctx, "crash")
	if err != nil || now.Status != v1.StatusRunning || now.Pid != st.Pid {
		t.Fatalf("re-adopted state %+v %v", now, err)
	}
	n := len(messages(readLiveLog(t, logPath), "stdout"))
	waitLines(t, logPath, n+10) // the output flows again
	if err := c2.Kill(ctx, "crash", syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	e := wait(t, c2, "crash")
	if e.ExitCode != 137 || e.Signal != 9 || e.Reason != v1.ReasonError || e.FinishedAt == 0 {
		t.Fatalf("exit of a re-adopted container %+v, want exact 137", e)
	}
	checkSequence(t, messages(readLog(t, logPath), "stdout"))
	// The exit is durable: a further restart reports the same.
	st2, err := c2.State(ctx, "crash")
	if err != nil || st2.Exit == nil || *st2.Exit != *e {
		t.Fatalf("state %+v %v", st2, err)
	}
	// The init's record is consumed with its exit: removed once the exit
	// is recorded and published (watch), so a moment after the caller sees
	// it. Records of other processes the dead supervisor left (ending after
	// the new one's sweep at start) wait for the next sweep
	// (keeperSweepInterval).
	initRecord := func() string {
		left, _ := os.ReadDir(filepath.Join(stateDir, "supervisor", "exits"))
		for _, r := range left {
			if strings.HasPrefix(r.Name(), strconv.Itoa(st.Pid)+"-") {
				return r.Name()
			}
		}
		return ""
	}
	if !testsupport.Poll(testsupport.Slow(2*time.Second), 5*time.Millisecond, func() bool { return initRecord() == "" }) {
		t.Errorf("the re-adopted init's keeper exit record is left: %s", initRecord())
	}
}

// TestSupervisorOutage: containers end before, during and after a
// supervisor outage of over a second (kill -9, the next supervisor kept
// from serving): every exit code, signal and finish time is what happened,
// and every line of output is in the log once, including what a container
// wrote while no supervisor ran and just before it ended. The containers
// wait for gates (files the test makes in a directory mounted into them)
// to end in the outage or after it, whatever the machine's load.
func TestSupervisorOutage(t *testing.T) {
	c, stateDir := startSupervisor(t)
	ctx := testCtx(t)
	dir, gate := t.TempDir(), t.TempDir()
	logs := map[string]string{}
	start := func(id, script string) *v1.State {
		logs[id] = filepath.Join(dir, id+".log")
		return run(t, c, id, v1.CreateRequest{Bundle: bundle(t, id, script, withGate(gate)), LogPath: logs[id]})
	}
	open := func(name string) {
		if err := os.WriteFile(filepath.Join(gate, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	start("before", "echo b0; echo b1; exit 7")
	if e := wait(t, c, "before"); e.ExitCode != 7 {
		t.Fatalf("before: %+v", e)
	}
	t0 := time.Now()
	start("during", "echo d0; until [ -e /gate/during ]; do sleep 0.02; done; echo d1; echo d2 >&2; exit 3")
	killed := start("killed", "echo k0; exec sleep 100")
	start("after", `i=0; until [ -e /gate/after ]; do echo line$i; i=$((i+1)); sleep 0.02; done; exit 5`)
	waitLines(t, logs["after"], 2)
	waitLines(t, logs["during"], 1)
	v, err := c.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	crash := time.Now()
	end := testsupport.CrashSupervisor(t, stateDir, v.KeeperPid, v.Pid)
	open("during")
	time.Sleep(300 * time.Millisecond)
	killedAt := time.Now()
	syscall.Kill(killed.Pid, syscall.SIGKILL)
	time.Sleep(time.Second)
	outageEnd := time.Now()
	end()
	c2 := ensure(t, stateDir)
	open("after")
	check := func(id string, code int32, signal int, after, before time.Time) {
		t.Helper()
		e := wait(t, c2, id)
		fin := time.Unix(0, e.FinishedAt)
		if e.ExitCode != code || e.Signal != signal || e.Reason != v1.ReasonError || fin.Before(after) || fin.After(before) {
			t.Errorf("%s: exit %+v finished %v, want code %d signal %d finished in [%v, %v]", id, e, fin, code, signal, after, before)
		}
	}
	check("during", 3, 0, crash, outageEnd)
	check("killed", 137, 9, killedAt, outageEnd)
	check("after", 5, 0, outageEnd, time.Now().Add(time.Minute))
	check("before", 7, 0, time.Time{}, t0)
	wantLog := map[string][2][]string{
		"before": {{"b0", "b1"}, nil},
		"during": {{"d0", "d1"}, {"d2"}},
		"killed": {{"k0"}, nil},
	}
	for id, want := range wantLog {
		recs := readLog(t, logs[id])
		if out, errs := messages(recs, "stdout"), messages(recs, "stderr"); !slices.Equal(out, want[0]) || !slices.Equal(errs, want[1]) {
			t.Errorf("%s: log %+v, want stdout %q stderr %q", id, recs, want[0], want[1])
		}
	}
	// Numbered lines from before, during and after the outage, each once.
	checkSequence(t, messages(readLog(t, logs["after"]), "stdout"))
}

// withGate bind-mounts dir read-only at /gate.
func withGate(dir string) bundleOpt {
	return func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/gate", Source: dir, Type: "bind", Options: []string{"rbind", "ro"}})
	}
}

// TestStdinSurvivesSupervisorCrash: a container's open stdin does not
// end (EOF) because its supervisor died: the keeper holds a write end
// until CloseStdin, which still ends it after the crash.
func TestStdinSurvivesSupervisorCrash(t *testing.T) {
	c, stateDir := startSupervisor(t)
	ctx := testCtx(t)
	logPath := filepath.Join(t.TempDir(), "c.log")
	st := run(t, c, "stdin", v1.CreateRequest{Bundle: bundle(t, "stdin", "cat; echo eof; exit 4"), LogPath: logPath, Stdin: true})
	v, err := c.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	end := testsupport.CrashSupervisor(t, stateDir, v.KeeperPid, v.Pid)
	time.Sleep(500 * time.Millisecond)
	if !pidAlive(st.Pid) {
		t.Fatal("the container's stdin ended with its supervisor")
	}
	end()
	c2 := ensure(t, stateDir)
	if err := c2.CloseStdin(ctx, "stdin"); err != nil {
		t.Fatal(err)
	}
	if e := wait(t, c2, "stdin"); e.ExitCode != 4 {
		t.Fatalf("exit %+v, want 4 (cat read EOF after CloseStdin)", e)
	}
	if got := messages(readLog(t, logPath), "stdout"); !slices.Equal(got, []string{"eof"}) {
		t.Fatalf("log %q", got)
	}
}

// TestKeeperKilled: where the keeper dies with the supervisor, nothing
// was left to observe a container's exit: it is reported 255/Unknown,
// never an invented code, and a new keeper and supervisor take over.
func TestKeeperKilled(t *testing.T) {
	c, stateDir := startSupervisor(t)
	ctx := testCtx(t)
	st := run(t, c, "orphan", v1.CreateRequest{Bundle: bundle(t, "orphan", "exec sleep 100")})
	v, err := c.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Kill(v.KeeperPid, syscall.SIGKILL)
	syscall.Kill(v.Pid, syscall.SIGKILL)
	waitGone(t, v.KeeperPid)
	waitGone(t, v.Pid)
	syscall.Kill(st.Pid, syscall.SIGKILL)
	c2 := ensure(t, stateDir)
	v2, err := c2.Version(ctx)
	if err != nil || v2.KeeperPid == 0 || v2.KeeperPid == v.KeeperPid {
		t.Fatalf("no new keeper: %+v %v", v2, err)
	}
	if e := wait(t, c2, "orphan"); e.ExitCode != 255 || e.Reason != v1.ReasonUnknown || e.FinishedAt == 0 {
		t.Fatalf("exit nobody observed %+v, want 255/Unknown", e)
	}
}

func TestOCIRuntime(t *testing.T) {
	runc, err := exec.LookPath("runc")
	testsupport.Require(t, err == nil, "runc not installed (apt-get install runc)")
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
// descriptor and goroutine counts where they were, and the keeper's
// descriptors (its output holds).
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
	v, err := c.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keeperFDs := func() int {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", v.KeeperPid))
		return len(fds)
	}
	keeperBefore := keeperFDs()
	for i := 0; i < 50; i++ {
		cycle()
	}
	// libcontainer drops a pidfd-backed os.Process per container that only
	// a GC cleanup closes, asynchronously: poll for the count to settle.
	var after *v1.Stats
	testsupport.Poll(testsupport.Slow(5*time.Second), 20*time.Millisecond, func() bool {
		if after, err = c.Stats(ctx); err != nil {
			t.Fatal(err)
		}
		return after.OpenFDs <= before.OpenFDs && keeperFDs() <= keeperBefore
	})
	if after.OpenFDs > before.OpenFDs || after.Goroutines > before.Goroutines+2 || after.Containers != 0 {
		t.Fatalf("leak: before %+v after %+v", before, after)
	}
	// Every output hold the keeper was given was dropped.
	if n := keeperFDs(); n > keeperBefore {
		t.Fatalf("keeper descriptors: %d before, %d after", keeperBefore, n)
	}
	if n := len(messages(readLog(t, logPath), "stdout")); n != 51 {
		t.Fatalf("log has %d lines, want 51", n)
	}
}

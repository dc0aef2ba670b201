package supervisor_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/supervisor/client"
	"github.com/berth-cri/berth/internal/testsupport"
)

// withTerminal gives the bundle's process a terminal of rows x cols.
func withTerminal(rows, cols uint) bundleOpt {
	return func(s *specs.Spec) {
		s.Process.Terminal = true
		s.Process.ConsoleSize = &specs.Box{Height: rows, Width: cols}
	}
}

// ttyLines is what a log reader sees of a terminal's output: the "\r" of the
// terminal's "\r\n" line ends must not be in the messages.
func ttyLines(t *testing.T, recs []logRecord) []string {
	t.Helper()
	lines := messages(recs, "stdout")
	for _, l := range lines {
		if strings.HasSuffix(l, "\r") {
			t.Fatalf("log message %q keeps the terminal's carriage return", l)
		}
	}
	return lines
}

var ptsName = regexp.MustCompile(`^/dev/pts/[0-9]+$`)

// TestTerminalLog: a terminal container's output is logged as stdout, its
// stdio is a pty (tty prints /dev/pts/N), the spec's console size applies,
// and stderr goes to the same terminal; for both runtime kinds.
func TestTerminalLog(t *testing.T) {
	c, _ := startSupervisor(t)
	kinds := []struct {
		name string
		req  v1.CreateRequest
	}{{"libcontainer", v1.CreateRequest{}}}
	if runc, err := exec.LookPath("runc"); err == nil {
		kinds = append(kinds, struct {
			name string
			req  v1.CreateRequest
		}{"oci", v1.CreateRequest{Kind: v1.RuntimeOCI, RuntimePath: runc, RuntimeRoot: t.TempDir()}})
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			id := "tty-" + k.name
			req := k.req
			req.Terminal = true
			req.LogPath = filepath.Join(t.TempDir(), "tty.log")
			req.Bundle = bundle(t, id, "tty; stty size; echo to-stderr >&2; exit 5", withTerminal(24, 80))
			st := run(t, c, id, req)
			if !st.Terminal || st.StdinPath != "" {
				t.Fatalf("state %+v: want a terminal and no stdin FIFO", st)
			}
			if e := wait(t, c, id); e.ExitCode != 5 {
				t.Fatalf("exit %+v", e)
			}
			recs := readLog(t, req.LogPath)
			if errs := messages(recs, "stderr"); len(errs) != 0 {
				t.Fatalf("stderr records in a terminal's log: %q", errs)
			}
			got := ttyLines(t, recs)
			if len(got) != 3 || !ptsName.MatchString(got[0]) || got[1] != "24 80" || got[2] != "to-stderr" {
				t.Fatalf("log of a terminal container %q, want [/dev/pts/N, 24 80, to-stderr]", got)
			}
			if err := c.Delete(testCtx(t), id); err != nil {
				t.Fatal(err)
			}
		})
	}
	// The request and the bundle must agree on the terminal.
	_, err := c.Create(testCtx(t), "mismatch", v1.CreateRequest{Bundle: bundle(t, "mismatch", "true", withTerminal(0, 0))})
	if err == nil {
		t.Fatal("create with a terminal in the spec only succeeded")
	}
}

// TestTerminalAttach: through an attach, a resize reaches the terminal (stty
// size), stdin reaches an interactive sh, and with stdin_once the end of the
// attacher's stdin ends the shell's input, while the log keeps everything.
func TestTerminalAttach(t *testing.T) {
	c, dir := startSupervisor(t)
	logPath := dir + "/sh.log"
	run(t, c, "sh", v1.CreateRequest{
		Bundle: bundle(t, "sh", "exec sh", withTerminal(24, 80)), LogPath: logPath,
		Terminal: true, Stdin: true, StdinOnce: true,
	})
	a := attach(t, c, "sh")
	if !a.a.State.Terminal || !a.a.State.StdinOpen {
		t.Fatalf("attach state %+v", a.a.State)
	}
	if err := a.a.Resize(30, 100); err != nil {
		t.Fatal(err)
	}
	// Frames are handled in order: the resize is applied before this runs.
	if _, err := a.a.Write([]byte("stty size; echo answer-$((6*7))\n")); err != nil {
		t.Fatal(err)
	}
	testsupport.PollUntil(t, "the shell's answer", 10*time.Second, func() bool { return strings.Contains(a.out.String(), "answer-42") })
	if !strings.Contains(a.out.String(), "30 100") {
		t.Fatalf("stty size after a resize to 30x100: %q", a.out.String())
	}
	if a.err.String() != "" {
		t.Fatalf("a terminal attach got stderr frames: %q", a.err.String())
	}
	// stdin_once: the end of this attacher's stdin is the end of the shell's.
	if err := a.a.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	if e := wait(t, c, "sh"); e.ExitCode != 0 {
		t.Fatalf("exit %+v, want 0 (sh at end of input)", e)
	}
	if err := <-a.done; err != nil {
		t.Fatalf("attach ended with %v", err)
	}
	st, err := c.State(testCtx(t), "sh")
	if err != nil || st.StdinOpen {
		t.Fatalf("state after stdin_once %+v %v", st, err)
	}
	logged := strings.Join(messages(readLog(t, logPath), "stdout"), "\n")
	if !strings.Contains(logged, "30 100") || !strings.Contains(logged, "answer-42") {
		t.Fatalf("log misses the session:\n%s", logged)
	}
}

// TestTerminalUpgradeKeepsEveryLogLine: the pty master crosses an in-place
// upgrade, so a terminal container's log stays complete and its exit exact.
func TestTerminalUpgradeKeepsEveryLogLine(t *testing.T) {
	c, _ := startSupervisor(t)
	ctx := testCtx(t)
	logPath := filepath.Join(t.TempDir(), "c.log")
	st := run(t, c, "tty-upg", v1.CreateRequest{Bundle: bundle(t, "tty-upg", counterScript, withTerminal(24, 80)), LogPath: logPath, Terminal: true})
	waitLines(t, logPath, 20)
	before, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Upgrade(ctx); err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	n := len(messages(readLiveLog(t, logPath), "stdout"))
	waitLines(t, logPath, n+20)
	// The master was handed over, not duplicated or leaked.
	if after, err := c.Stats(ctx); err != nil || after.OpenFDs > before.OpenFDs {
		t.Fatalf("descriptors before the upgrade %+v, after %+v %v", before, after, err)
	}
	// Still the terminal: a resize through a new attach applies.
	a := attach(t, c, "tty-upg")
	if err := a.a.Resize(40, 120); err != nil {
		t.Fatal(err)
	}
	now, err := c.State(ctx, "tty-upg")
	if err != nil || now.Status != v1.StatusRunning || now.Pid != st.Pid {
		t.Fatalf("after upgrade: %+v %v", now, err)
	}
	if err := c.Kill(ctx, "tty-upg", syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if e := wait(t, c, "tty-upg"); e.ExitCode != 137 || e.Signal != 9 {
		t.Fatalf("exit after upgrade %+v, want exact 137", e)
	}
	checkSequence(t, ttyLines(t, readLog(t, logPath)))
}

// TestTerminalSupervisorKilled pins the documented cost of kill -9 for
// terminal containers: the master dies with the supervisor and the terminal
// is hung up. A container init in its own PID namespace ignores the SIGHUP
// (the kernel delivers no default-action signal to a namespace init) and
// keeps running without a terminal; without a PID namespace the shell dies
// of SIGHUP. Either exit is exact: the keeper reaped and recorded it. (The
// second case also pins that containers do not inherit a SIGHUP the
// supervisor ignores: cmd/berth-supervisor catches it instead.)
func TestTerminalSupervisorKilled(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     []bundleOpt
		survives bool
		signal   int
	}{
		{"pid-namespace", nil, true, 9},
		{"host-pid", []bundleOpt{hostPID}, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, stateDir := startSupervisor(t)
			ctx := testCtx(t)
			logPath := filepath.Join(t.TempDir(), "c.log")
			id := "tty-crash-" + tc.name
			opts := append([]bundleOpt{withTerminal(24, 80)}, tc.opts...)
			st := run(t, c, id, v1.CreateRequest{Bundle: bundle(t, id, counterScript, opts...), LogPath: logPath, Terminal: true})
			waitLines(t, logPath, 10)
			v, err := c.Version(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := syscall.Kill(v.Pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			waitGone(t, v.Pid)
			c2 := ensure(t, stateDir)
			if tc.survives {
				if !pidAlive(st.Pid) {
					t.Fatal("a namespace init died of its terminal's hang-up")
				}
				now, err := c2.State(ctx, id)
				if err != nil || now.Status != v1.StatusRunning {
					t.Fatalf("re-adopted state %+v %v", now, err)
				}
				if err := c2.Kill(ctx, id, syscall.SIGKILL, false); err != nil {
					t.Fatal(err)
				}
			}
			e := wait(t, c2, id)
			if e.Signal != tc.signal || e.ExitCode != 128+int32(tc.signal) || e.Reason != v1.ReasonError {
				t.Fatalf("exit %+v, want signal %d", e, tc.signal)
			}
			// What was logged before the kill is intact.
			checkSequence(t, ttyLines(t, readLog(t, logPath)))
		})
	}
}

// TestTerminalFailedUpgradeResumes: when the upgrade's exec fails, the
// supervisor resumes with the terminal it still holds: output keeps flowing
// into the log without a gap.
func TestTerminalFailedUpgradeResumes(t *testing.T) {
	stateDir := t.TempDir()
	bin := filepath.Join(t.TempDir(), "berth-supervisor")
	data, err := os.ReadFile(testEnv.bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	c, err := client.EnsureRunning(ctx, bin, stateDir, client.WithCgroup(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopAll(t, c) })
	logPath := filepath.Join(t.TempDir(), "c.log")
	run(t, c, "tty-resume", v1.CreateRequest{Bundle: bundle(t, "tty-resume", counterScript, withTerminal(24, 80)), LogPath: logPath, Terminal: true})
	waitLines(t, logPath, 10)
	os.Remove(bin) // the exec must fail
	if _, err := c.Upgrade(ctx); err == nil {
		t.Fatal("upgrade without a binary succeeded")
	}
	n := len(messages(readLiveLog(t, logPath), "stdout"))
	waitLines(t, logPath, n+10)
	if err := c.Kill(ctx, "tty-resume", syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if e := wait(t, c, "tty-resume"); e.ExitCode != 137 {
		t.Fatalf("exit %+v, want exact 137", e)
	}
	checkSequence(t, ttyLines(t, readLog(t, logPath)))
}

// TestTerminalNoLeaks: terminal containers that run, take stdin through an
// attach and are deleted leave no descriptor (pty master, console socket)
// or goroutine behind.
func TestTerminalNoLeaks(t *testing.T) {
	c, _ := startSupervisor(t)
	ctx := testCtx(t)
	b := bundle(t, "tty-leak", "read line; echo got-$line", withTerminal(24, 80))
	cycle := func() {
		run(t, c, "tty-leak", v1.CreateRequest{Bundle: b, Terminal: true, Stdin: true, StdinOnce: true})
		a, err := c.Attach(ctx, "tty-leak")
		if err != nil {
			t.Fatal(err)
		}
		a.Write([]byte("x\n"))
		a.CloseStdin()
		if e := wait(t, c, "tty-leak"); e.ExitCode != 0 {
			t.Fatalf("exit %+v", e)
		}
		a.Close()
		if err := c.Delete(ctx, "tty-leak"); err != nil {
			t.Fatal(err)
		}
	}
	cycle() // warm up
	before, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		cycle()
	}
	var after *v1.Stats
	testsupport.PollUntil(t, "descriptors and goroutines to settle", 10*time.Second, func() bool {
		if after, err = c.Stats(ctx); err != nil {
			t.Fatal(err)
		}
		return after.OpenFDs <= before.OpenFDs && after.Goroutines <= before.Goroutines+2
	})
	if after.Containers != 0 {
		t.Fatalf("containers left: %+v", after)
	}
}

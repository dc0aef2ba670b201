package supervisor_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
)

func TestExitCodes(t *testing.T) {
	c, _ := startSupervisor(t)
	for _, tc := range []struct {
		id, script string
		code       int32
		reason     string
	}{
		{"exit0", "true", 0, v1.ReasonCompleted},
		{"exit3", "exit 3", 3, v1.ReasonError},
	} {
		t.Run(tc.id, func(t *testing.T) {
			run(t, c, tc.id, v1.CreateRequest{Bundle: bundle(t, tc.id, tc.script)})
			e := wait(t, c, tc.id)
			if e.ExitCode != tc.code || e.Reason != tc.reason || e.Signal != 0 || e.OOMKilled {
				t.Fatalf("exit %+v, want code %d reason %s", e, tc.code, tc.reason)
			}
		})
	}
}

func TestKillSigterm(t *testing.T) {
	c, _ := startSupervisor(t)
	ctx := testCtx(t)
	// Without its own PID namespace the shell is not an init, so SIGTERM's
	// default action kills it: the exit is a signal death.
	run(t, c, "term", v1.CreateRequest{Bundle: bundle(t, "term", "exec sleep 100", hostPID)})
	if err := c.Kill(ctx, "term", syscall.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	e := wait(t, c, "term")
	if e.ExitCode != 143 || e.Signal != int(syscall.SIGTERM) || e.Reason != v1.ReasonError {
		t.Fatalf("exit %+v, want 143 by SIGTERM", e)
	}
	// Killing a stopped container is fine (StopContainer is idempotent).
	if err := c.Kill(ctx, "term", syscall.SIGKILL, false); err != nil {
		t.Fatalf("kill after exit: %v", err)
	}
}

func TestDeleteIdempotentAndStateMachine(t *testing.T) {
	c, stateDir := startSupervisor(t)
	ctx := testCtx(t)
	if err := c.Delete(ctx, "never-existed"); err != nil {
		t.Fatalf("delete of an unknown id: %v", err)
	}
	if _, err := c.State(ctx, "never-existed"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("state of an unknown id: %v, want ErrNotFound", err)
	}
	b := bundle(t, "sm", "sleep 100")
	st, err := c.Create(ctx, "sm", v1.CreateRequest{Bundle: b})
	if err != nil || st.Status != v1.StatusCreated || st.Pid == 0 {
		t.Fatalf("create: %+v %v", st, err)
	}
	if _, err := c.Create(ctx, "sm", v1.CreateRequest{Bundle: b}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("second create: %v", err)
	}
	if st, err = c.Start(ctx, "sm"); err != nil || st.Status != v1.StatusRunning || st.StartedAt == 0 {
		t.Fatalf("start: %+v %v", st, err)
	}
	if err := c.Delete(ctx, "sm"); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("delete of a running container: %v", err)
	}
	c.Kill(ctx, "sm", syscall.SIGKILL, false)
	if e := wait(t, c, "sm"); e.ExitCode != 137 || e.Signal != 9 {
		t.Fatalf("exit %+v", e)
	}
	for i := 0; i < 2; i++ {
		if err := c.Delete(ctx, "sm"); err != nil {
			t.Fatalf("delete %d: %v", i, err)
		}
	}
	if _, err := os.Stat(filepath.Join(stateDir, "supervisor", "containers", "sm")); !os.IsNotExist(err) {
		t.Fatalf("container dir left: %v", err)
	}
	// A created, never started container can be deleted.
	if _, err := c.Create(ctx, "sm", v1.CreateRequest{Bundle: b}); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "sm"); err != nil {
		t.Fatalf("delete of a created container: %v", err)
	}
}

func TestLogs(t *testing.T) {
	c, _ := startSupervisor(t)
	logPath := filepath.Join(t.TempDir(), "c.log")
	script := `echo out1; echo err1 >&2; echo out2; echo err2 >&2; ` +
		`dd if=/dev/zero bs=1000 count=40 2>/dev/null | tr '\000' a; echo; printf tail`
	run(t, c, "logs", v1.CreateRequest{Bundle: bundle(t, "logs", script), LogPath: logPath, MaxLogLineSize: 16384})
	if e := wait(t, c, "logs"); e.ExitCode != 0 {
		t.Fatalf("exit %+v", e)
	}
	recs := readLog(t, logPath)
	out, errs := messages(recs, "stdout"), messages(recs, "stderr")
	if strings.Join(errs, ",") != "err1,err2" {
		t.Fatalf("stderr lines %q", errs)
	}
	if len(out) != 4 || out[0] != "out1" || out[1] != "out2" || out[2] != strings.Repeat("a", 40000) || out[3] != "tail" {
		t.Fatalf("stdout lines %d: %.40q", len(out), out)
	}
	// The long line is split at 16 KiB: P P F; the unterminated tail is P.
	var sizes []int
	var tags []string
	for _, r := range recs {
		if r.stream == "stdout" && strings.HasPrefix(r.msg, "a") {
			sizes, tags = append(sizes, len(r.msg)), append(tags, r.tag)
		}
	}
	if len(sizes) != 3 || sizes[0] != 16384 || sizes[1] != 16384 || sizes[2] != 40000-2*16384 || strings.Join(tags, "") != "PPF" {
		t.Fatalf("long line records %v %v", sizes, tags)
	}
	var last logRecord
	for _, r := range recs {
		if r.stream == "stdout" {
			last = r
		}
	}
	if last.msg != "tail" || last.tag != "P" {
		t.Fatalf("last stdout record %+v, want partial tail", last)
	}
}

func TestDiscardedOutput(t *testing.T) {
	c, _ := startSupervisor(t)
	run(t, c, "quiet", v1.CreateRequest{Bundle: bundle(t, "quiet", "echo nobody reads this; exit 0")})
	if e := wait(t, c, "quiet"); e.ExitCode != 0 {
		t.Fatalf("exit %+v", e)
	}
}

func TestReopenLogAfterRotation(t *testing.T) {
	c, _ := startSupervisor(t)
	ctx := testCtx(t)
	logPath := filepath.Join(t.TempDir(), "c.log")
	run(t, c, "rot", v1.CreateRequest{Bundle: bundle(t, "rot", counterScript), LogPath: logPath})
	waitLines(t, logPath, 10)
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := c.ReopenLog(ctx, "rot"); err != nil {
		t.Fatal(err)
	}
	waitLines(t, logPath, 10)
	c.Kill(ctx, "rot", syscall.SIGKILL, false)
	if e := wait(t, c, "rot"); e.ExitCode != 137 {
		t.Fatalf("exit %+v", e)
	}
	all := append(readLog(t, logPath+".1"), readLog(t, logPath)...)
	checkSequence(t, messages(all, "stdout"))
}

func TestOOMKilled(t *testing.T) {
	c, _ := startSupervisor(t)
	limit := int64(16 << 20)
	withLimit := func(s *specs.Spec) {
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit, Swap: &limit}
	}
	// The shell holds 64 MB of command substitution output: it is the
	// biggest process of its cgroup, so the OOM killer picks it.
	run(t, c, "oom", v1.CreateRequest{Bundle: bundle(t, "oom", `x=$(head -c 64000000 /dev/zero | tr '\000' a); echo survived`, withLimit)})
	e := wait(t, c, "oom")
	if !e.OOMKilled || e.Reason != v1.ReasonOOMKilled || e.ExitCode != 137 {
		t.Fatalf("exit %+v, want OOMKilled 137", e)
	}
}

package supervisor_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/testsupport"
)

// testCriu is the CRIU the checkpoint tests use: hack/install-criu.sh's.
func testCriu(t *testing.T) string {
	t.Helper()
	path := "/usr/local/sbin/criu"
	out, err := exec.Command(path, "--version").Output()
	testsupport.Require(t, err == nil && strings.Contains(string(out), "Version: 4."),
		"CRIU 4.x is not at %s (make criu installs it): %v", path, err)
	return path
}

// lastCount is the last complete number the counter printed to its log.
func lastCount(t *testing.T, logPath string) int {
	t.Helper()
	lines := messages(readLog(t, logPath), "stdout")
	if len(lines) == 0 {
		return -1
	}
	n, err := strconv.Atoi(lines[len(lines)-1])
	if err != nil {
		t.Fatalf("log line %q: %v", lines[len(lines)-1], err)
	}
	return n
}

// TestCheckpointRestore dumps a counting container while it runs (it keeps
// counting), then restores the dump as a new container, whose count goes
// on from the dumped value into its own log.
func TestCheckpointRestore(t *testing.T) {
	criu := testCriu(t)
	c, _ := startSupervisor(t)
	ctx := testCtx(t)
	const counter = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done"
	b := bundle(t, "ckpt", counter)
	logDir := t.TempDir()
	origLog := filepath.Join(logDir, "orig.log")
	run(t, c, "ckpt", v1.CreateRequest{Bundle: b, LogPath: origLog})
	waitLines(t, origLog, 5)

	work := t.TempDir()
	if d := os.Getenv("BERTH_CKPT_DEBUG"); d != "" {
		work = d
	}
	images := filepath.Join(work, "checkpoint")
	before := lastCount(t, origLog)
	start := time.Now()
	if err := c.Checkpoint(ctx, "ckpt", v1.CheckpointRequest{ImagesDir: images, WorkDir: filepath.Join(work, "work"), CriuPath: criu}); err != nil {
		log, _ := os.ReadFile(filepath.Join(work, "work", "dump.log"))
		t.Fatalf("checkpoint: %v\n%s", err, tail(string(log), 30))
	}
	t.Logf("checkpoint took %v", time.Since(start))
	if _, err := os.Stat(filepath.Join(images, "inventory.img")); err != nil {
		t.Fatalf("no CRIU images: %v", err)
	}
	// The original keeps counting.
	st, err := c.State(ctx, "ckpt")
	if err != nil || st.Status != v1.StatusRunning {
		t.Fatalf("after checkpoint: %+v, %v", st, err)
	}
	waitCount(t, origLog, before+10)
	c.Kill(ctx, "ckpt", syscall.SIGKILL, true)
	wait(t, c, "ckpt")

	restoredLog := filepath.Join(logDir, "restored.log")
	start = time.Now()
	rst, err := c.Restore(ctx, "restored", v1.CreateRequest{
		Bundle: b, LogPath: restoredLog,
		Restore: &v1.RestoreRequest{ImagesDir: images, WorkDir: filepath.Join(work, "restore"), CriuPath: criu},
	})
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(work, "restore", "restore.log"))
		t.Fatalf("restore: %v\n%s", err, tail(string(log), 30))
	}
	t.Logf("restore took %v", time.Since(start))
	if rst.Status != v1.StatusRunning || rst.Pid == 0 {
		t.Fatalf("restored state %+v", rst)
	}
	waitLines(t, restoredLog, 3)
	first, err := strconv.Atoi(messages(readLog(t, restoredLog), "stdout")[0])
	if err != nil {
		t.Fatal(err)
	}
	if first <= before {
		t.Fatalf("restored counter starts at %d, the dump was taken after %d", first, before)
	}
	// It is supervised like any container: killed, its exit is reported.
	if err := c.Kill(ctx, "restored", syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if e := wait(t, c, "restored"); e.Signal != int(syscall.SIGKILL) {
		t.Fatalf("restored exit %+v", e)
	}
}

// TestCheckpointErrors: the precise answers kubelet gets through berthd.
func TestCheckpointErrors(t *testing.T) {
	criu := testCriu(t)
	c, _ := startSupervisor(t)
	ctx := testCtx(t)
	work := t.TempDir()
	req := v1.CheckpointRequest{ImagesDir: filepath.Join(work, "i"), WorkDir: filepath.Join(work, "w"), CriuPath: criu}
	if err := c.Checkpoint(ctx, "nope", req); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("unknown container: %v", err)
	}
	if _, err := c.Create(ctx, "created", v1.CreateRequest{Bundle: bundle(t, "created", "sleep 100")}); err != nil {
		t.Fatal(err)
	}
	if err := c.Checkpoint(ctx, "created", req); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("created container: %v", err)
	}
	bad := req
	bad.CriuPath = "criu"
	if err := c.Checkpoint(ctx, "created", bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("relative criu path: %v", err)
	}
}

// waitCount polls until the counter's log reached n.
func waitCount(t *testing.T, path string, n int) {
	t.Helper()
	if !testsupport.Poll(testsupport.Slow(10*time.Second), 20*time.Millisecond, func() bool { return lastCount(t, path) >= n }) {
		t.Fatalf("counter in %s stuck at %d, want %d", path, lastCount(t, path), n)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestPauseCheckpointResume: what CheckpointPod relies on. A paused
// container stays paused through its dump (CRIU leaves a frozen cgroup
// frozen), and counts on once resumed.
func TestPauseCheckpointResume(t *testing.T) {
	criu := testCriu(t)
	c, _ := startSupervisor(t)
	ctx := testCtx(t)
	logPath := filepath.Join(t.TempDir(), "p.log")
	run(t, c, "p", v1.CreateRequest{Bundle: bundle(t, "p", "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done"), LogPath: logPath})
	waitLines(t, logPath, 3)
	if err := c.Pause(ctx, "p", true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // output already read by the supervisor
	frozen := lastCount(t, logPath)
	work := t.TempDir()
	if err := c.Checkpoint(ctx, "p", v1.CheckpointRequest{ImagesDir: filepath.Join(work, "i"), WorkDir: filepath.Join(work, "w"), CriuPath: criu}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := lastCount(t, logPath); n != frozen {
		t.Fatalf("a paused container counted from %d to %d through its checkpoint", frozen, n)
	}
	if err := c.Pause(ctx, "p", false); err != nil {
		t.Fatal(err)
	}
	waitCount(t, logPath, frozen+3)
	// Resuming a running container is not an error (a pod checkpoint's
	// clean-up resumes everything it may have paused).
	if err := c.Pause(ctx, "p", false); err != nil {
		t.Fatal(err)
	}
}

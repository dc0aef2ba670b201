// Package testsupport is what the tests of internal/exec,
// internal/server/streaming, internal/supervisor and test/ share: a supervisor
// binary built from this tree, a busybox root filesystem, a buffer that
// tests read while something writes it, and polling; and Require, how any
// test skips for a missing capability (require.go). Only tests import it.
package testsupport

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// BuildSupervisor builds cmd/berth-supervisor (cgo, seccomp) into dir and
// returns its path; race adds -race (the supervisor checking itself).
// Where there is no Go toolchain (the test VM runs prebuilt test binaries),
// $BERTH_TEST_SUPERVISOR names a supervisor built beforehand; it is copied
// into dir (tests may replace or upgrade the binary they get).
func BuildSupervisor(dir string, race bool) (string, error) {
	bin := filepath.Join(dir, "berth-supervisor")
	if prebuilt := os.Getenv("BERTH_TEST_SUPERVISOR"); prebuilt != "" && !race {
		data, err := os.ReadFile(prebuilt)
		if err != nil {
			return "", fmt.Errorf("prebuilt supervisor: %w", err)
		}
		return bin, os.WriteFile(bin, data, 0o755)
	}
	args := []string{"build", "-tags", "seccomp", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "github.com/berth-cri/berth/cmd/berth-supervisor")...)
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build supervisor: %w\n%s", err, out)
	}
	return bin, nil
}

// applets are the busybox commands the tests run.
var applets = []string{
	"sh", "echo", "sleep", "cat", "true", "false", "printf", "dd", "tr", "head", "seq", "kill",
	"tty", "stty", "id", "env", "pwd", "yes", "ls",
}

// BusyboxRootfs makes a minimal root filesystem at root from the host's
// static busybox (apt-get install busybox-static): /bin with the applets
// above, the usual mount points, /work, and /etc/notexec (a file that is
// not executable).
func BusyboxRootfs(root string) error {
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc", "work"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	data, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		return err
	}
	for _, a := range applets {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(root, "etc", "notexec"), []byte("x"), 0o644)
}

// SyncBuffer is a WriteCloser tests read while something writes to it.
type SyncBuffer struct {
	mu     sync.Mutex
	b      strings.Builder
	closed bool
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// Close records that the writer was closed; writes still land.
func (b *SyncBuffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}

// Closed reports whether Close was called.
func (b *SyncBuffer) Closed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Contains reports whether what was written so far holds sub.
func (b *SyncBuffer) Contains(sub string) bool { return strings.Contains(b.String(), sub) }

// PollUntil polls cond every 10 ms until it holds, failing the test after
// d, stretched by Slow.
func PollUntil(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	if !Poll(Slow(d), 10*time.Millisecond, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// Poll calls cond every interval until it holds or d has passed (as given:
// wrap it in Slow to stretch it), and reports whether it held. For a
// caller that says more than PollUntil when cond never holds, or that
// goes on either way. Every test polls through here: no test sleeps to
// synchronise.
func Poll(d, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
	return true
}

// slowFactor is $BERTH_TEST_SLOW, the factor by which waits are stretched
// where everything is slower (the emulated test VM: fork/exec ~35x, mounts
// ~50x); 1 when unset.
var slowFactor = sync.OnceValue(func() int {
	var n int
	if _, err := fmt.Sscan(os.Getenv("BERTH_TEST_SLOW"), &n); err != nil || n < 1 {
		return 1
	}
	return n
})

// Slow stretches a test's wait or timeout by $BERTH_TEST_SLOW.
func Slow(d time.Duration) time.Duration { return d * time.Duration(slowFactor()) }

// NoGoroutineLeaks fails t if, once its cleanups have run (servers
// closed), the number of goroutines does not come back to what it was when
// this was called, showing every goroutine's stack. Call it first, so that
// its cleanup runs last.
func NoGoroutineLeaks(t testing.TB) {
	t.Helper()
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		if !Poll(10*time.Second, 10*time.Millisecond, func() bool { return runtime.NumGoroutine() <= base }) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines left, %d at the start:\n%s", runtime.NumGoroutine(), base, buf)
		}
	})
}

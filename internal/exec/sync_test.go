package exec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/testsupport"
)

type syncCase struct {
	name     string
	cmd      []string
	code     int32
	stdout   string
	stderr   string // substring
	stdoutFn func(string) bool
}

var syncCases = []syncCase{
	{name: "exit0", cmd: []string{"true"}, code: 0},
	{name: "exit3", cmd: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, code: 3, stdout: "out\n", stderr: "err"},
	{name: "not found", cmd: []string{"no-such-cmd"}, code: 127, stderr: `exec: "no-such-cmd": executable file not found in $PATH`},
	{name: "not executable", cmd: []string{"/etc/notexec"}, code: 126, stderr: `exec: "/etc/notexec"`},
	{name: "user", cmd: []string{"id", "-u"}, stdout: "1234\n"},
	{name: "group", cmd: []string{"id", "-g"}, stdout: "4321\n"},
	{name: "cwd", cmd: []string{"pwd"}, stdout: "/work\n"},
	{name: "env", cmd: []string{"env"}, stdoutFn: func(s string) bool { return strings.Contains(s, "BERTH_TEST=exec-env\n") }},
}

func checkSync(c syncCase, stdout, stderr []byte, code int32, err error) error {
	if err != nil {
		return fmt.Errorf("%s: error %v", c.name, err)
	}
	if code != c.code {
		return fmt.Errorf("%s: exit code %d, want %d (stderr %q)", c.name, code, c.code, stderr)
	}
	if c.stdoutFn != nil {
		if !c.stdoutFn(string(stdout)) {
			return fmt.Errorf("%s: unexpected stdout %q", c.name, stdout)
		}
	} else if string(stdout) != c.stdout {
		return fmt.Errorf("%s: stdout %q, want %q", c.name, stdout, c.stdout)
	}
	if !strings.Contains(string(stderr), c.stderr) {
		return fmt.Errorf("%s: stderr %q, want it to contain %q", c.name, stderr, c.stderr)
	}
	return nil
}

func TestSync(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			tg := k.run(t, "sync-"+k.name)
			e := testExecer()
			for _, c := range syncCases {
				t.Run(c.name, func(t *testing.T) {
					out, errb, code, err := e.Sync(testCtx(t), tg, c.cmd, 10*time.Second, 0)
					if err := checkSync(c, out, errb, code, err); err != nil {
						t.Fatal(err)
					}
				})
			}
		})
	}
}

func TestSyncTimeoutKillsTree(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			tg := k.run(t, "timeout-"+k.name)
			e := testExecer()
			start := time.Now()
			// The background sleep holds the output pipes too: both must die.
			_, _, _, err := e.Sync(testCtx(t), tg, []string{"sh", "-c", "sleep 100 & sleep 100"}, 300*time.Millisecond, 0)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("error %v, want DeadlineExceeded", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("timeout took %s", d)
			}
			// Only the container's own sleep (its init) is left.
			testsupport.PollUntil(t, "exec'd sleeps to die", 5*time.Second, func() bool {
				out, _, _, _ := e.Sync(testCtx(t), tg, []string{"sh", "-c", "for p in /proc/[0-9]*; do cat $p/cmdline; echo; done"}, 10*time.Second, 0)
				return strings.Count(string(out), "sleep100") == 0 && strings.Count(string(out), "sleep") == 1
			})
		})
	}
}

func TestSyncOutputCapped(t *testing.T) {
	tg := runLibcontainer(t, "cap")
	e := testExecer()
	// 20 MiB on stdout plus some stderr: capped at 16 MiB in total, and the
	// command still runs to its end (no deadlock on a full pipe).
	out, errb, code, err := e.Sync(testCtx(t), tg, []string{"sh", "-c", "dd if=/dev/zero bs=1048576 count=20 2>/dev/null; echo done >&2"}, 30*time.Second, 0)
	if err != nil || code != 0 {
		t.Fatalf("code %d err %v", code, err)
	}
	if len(out)+len(errb) != DefaultMaxOutput {
		t.Fatalf("captured %d+%d bytes, want %d in total", len(out), len(errb), DefaultMaxOutput)
	}
	out, errb, _, err = e.Sync(testCtx(t), tg, []string{"sh", "-c", "echo 0123456789; echo abcdefghij >&2"}, 10*time.Second, 15)
	if err != nil || len(out)+len(errb) != 15 {
		t.Fatalf("small cap: %q %q %v", out, errb, err)
	}
}

func TestSyncContainerState(t *testing.T) {
	tg := runLibcontainer(t, "state")
	e := testExecer()
	unknown := tg
	unknown.ID = "never-created"
	if _, _, _, err := e.Sync(testCtx(t), unknown, []string{"true"}, time.Second, 0); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("unknown container: %v, want ErrNotFound", err)
	}
	if _, _, _, err := e.Sync(testCtx(t), tg, nil, time.Second, 0); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("empty command: %v, want ErrInvalidArgument", err)
	}
	// Kill the init: the container is stopped.
	if err := testEnv.sup.Kill(testCtx(t), tg.ID, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	testsupport.PollUntil(t, "the container to stop", 5*time.Second, func() bool {
		_, _, _, err := e.Sync(testCtx(t), tg, []string{"true"}, time.Second, 0)
		return errors.Is(err, errdefs.ErrFailedPrecondition)
	})
}

// TestSyncParallel runs 100 Syncs at once, a mix of successes, failures,
// timeouts and large outputs, checks every answer, then checks that no
// process, descriptor or goroutine was left behind.
func TestSyncParallel(t *testing.T) {
	tg := runLibcontainer(t, "parallel")
	e := testExecer()
	// Warm up (first use opens long-lived descriptors, e.g. the poller).
	e.Sync(testCtx(t), tg, []string{"true"}, time.Second, 0)
	fds, goroutines, children := fdCount(), runtimeGoroutines(), childCount(os.Getpid())
	supBefore, err := testEnv.sup.Stats(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	supChildren := childCount(testEnv.supPid)

	mix := append([]syncCase{}, syncCases...)
	mix = append(mix,
		syncCase{name: "big", cmd: []string{"sh", "-c", "dd if=/dev/zero bs=65536 count=64 2>/dev/null"}, stdoutFn: func(s string) bool { return len(s) == 64*65536 }},
	)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%10 == 9 {
				_, _, _, err := e.Sync(context.Background(), tg, []string{"sh", "-c", "sleep 100 & sleep 100"}, 500*time.Millisecond, 0)
				if !errors.Is(err, context.DeadlineExceeded) {
					errs <- fmt.Errorf("timeout case %d: %v", i, err)
				}
				return
			}
			c := mix[i%len(mix)]
			out, errb, code, err := e.Sync(context.Background(), tg, c.cmd, 30*time.Second, 0)
			if err := checkSync(c, out, errb, code, err); err != nil {
				errs <- fmt.Errorf("call %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Nothing left behind here, nor in the supervisor that ran the execs.
	supLeaks := func() string {
		st, err := testEnv.sup.Stats(testCtx(t))
		if err != nil {
			return err.Error()
		}
		if n := childCount(testEnv.supPid); n > supChildren || st.OpenFDs > supBefore.OpenFDs || st.Goroutines > supBefore.Goroutines {
			return fmt.Sprintf("supervisor: children %d -> %d, fds %d -> %d, goroutines %d -> %d",
				supChildren, n, supBefore.OpenFDs, st.OpenFDs, supBefore.Goroutines, st.Goroutines)
		}
		return ""
	}
	if !testsupport.Poll(10*time.Second, 20*time.Millisecond, func() bool {
		return childCount(os.Getpid()) <= children && fdCount() <= fds && runtimeGoroutines() <= goroutines && supLeaks() == ""
	}) {
		t.Fatalf("leak: children %d -> %d, fds %d -> %d, goroutines %d -> %d; %s",
			children, childCount(os.Getpid()), fds, fdCount(), goroutines, runtimeGoroutines(), supLeaks())
	}
}

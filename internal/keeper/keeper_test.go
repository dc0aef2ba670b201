package keeper

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/testsupport"
)

// runKeeperEnv makes the test binary run the keeper (TestMain): Run sets
// the process a child subreaper and reaps every child, which must not
// happen to the test process itself.
const runKeeperEnv = "BERTH_KEEPER_TEST_RUN"

func TestMain(m *testing.M) {
	if dir := os.Getenv(runKeeperEnv); dir != "" {
		err := Run(Config{
			StateDir: dir,
			Path:     "/bin/sh",
			Args:     []string{"sh", "-c", os.Getenv("BERTH_KEEPER_TEST_SCRIPT")},
			Env:      []string{"DIR=" + dir, "PATH=/usr/bin:/bin"},
			Setup:    func() { os.WriteFile(filepath.Join(dir, "setup"), nil, 0o600) },
		})
		if errors.Is(err, ErrRunning) {
			os.Exit(3)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startKeeper runs the keeper over dir with script as its supervisor.
func startKeeper(t *testing.T, dir, script string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), runKeeperEnv+"="+dir, "BERTH_KEEPER_TEST_SCRIPT="+script)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	})
	return cmd
}

func waitFile(t *testing.T, path string) []byte {
	t.Helper()
	var data []byte
	testsupport.PollUntil(t, path, 5*time.Second, func() bool {
		var err error
		data, err = os.ReadFile(path)
		return err == nil && len(data) > 0
	})
	return data
}

// The fake supervisor: the first run leaves a child that outlives it by
// 300 ms and exits 7, and dies; the later runs stay up (and say so).
const fakeSupervisor = `
echo "$$ $_BERTH_KEEPER_FD" >> "$DIR/starts"
[ -S /proc/self/fd/3 ] || echo "no hold channel" >> "$DIR/errors"
if [ ! -e "$DIR/orphaned" ]; then
	sh -c 'sleep 0.3; exit 7' &
	echo $! > "$DIR/orphan.tmp"; mv "$DIR/orphan.tmp" "$DIR/orphaned"
	kill -9 $$
fi
trap 'echo term >> "$DIR/terms"; exit 0' TERM
while :; do sleep 0.05; done
`

// TestRunReapsRecordsAndRestarts: the keeper starts the supervisor with
// the hold channel, starts it again at once when it dies, reaps the
// child it left and records that child's exit under its pid and start
// time; SIGTERM is passed on and ends both.
func TestRunReapsRecordsAndRestarts(t *testing.T) {
	dir := t.TempDir()
	k := startKeeper(t, dir, fakeSupervisor)
	orphan, err := strconv.Atoi(strings.TrimSpace(string(waitFile(t, filepath.Join(dir, "orphaned")))))
	if err != nil {
		t.Fatal(err)
	}
	start, err := StartTime(orphan)
	if err != nil {
		t.Fatalf("the orphan ended too soon for the test: %v", err)
	}
	began := time.Now()
	exits := ExitsDir(dir)
	testsupport.PollUntil(t, "the orphan's exit record", 5*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(exits, ExitName(orphan, start)))
		return err == nil
	})
	ws, at, err := ReadExit(exits, orphan, start)
	if err != nil || !ws.Exited() || ws.ExitStatus() != 7 || at.Before(began.Add(-300*time.Millisecond)) || at.After(time.Now()) {
		t.Fatalf("exit record: %v %v %v", ws, at, err)
	}
	// Reaped, not left a zombie.
	testsupport.PollUntil(t, "the orphan reaped", 5*time.Second, func() bool {
		_, err := StartTime(orphan)
		return err != nil
	})
	starts := strings.Fields(string(waitFile(t, filepath.Join(dir, "starts"))))
	testsupport.PollUntil(t, "a second supervisor", 5*time.Second, func() bool {
		data, _ := os.ReadFile(filepath.Join(dir, "starts"))
		starts = strings.Split(strings.TrimSpace(string(data)), "\n")
		return len(starts) >= 2
	})
	if len(starts) != 2 || !strings.HasSuffix(starts[0], " 3") || !strings.HasSuffix(starts[1], " 3") {
		t.Errorf("supervisor starts %q, want two, each with the channel at fd 3", starts)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "errors")); len(data) != 0 {
		t.Errorf("supervisor: %s", data)
	}
	if _, err := os.Stat(filepath.Join(dir, "setup")); err != nil {
		t.Errorf("setup did not run: %v", err)
	}
	// A second keeper of the same state dir gives way.
	second := exec.Command(os.Args[0])
	second.Env = append(os.Environ(), runKeeperEnv+"="+dir, "BERTH_KEEPER_TEST_SCRIPT=exit 1")
	if err := second.Run(); second.ProcessState.ExitCode() != 3 {
		t.Errorf("second keeper: %v, want exit 3 (ErrRunning)", err)
	}
	k.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- k.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("keeper after SIGTERM: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("keeper still running 5 s after SIGTERM")
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "terms")); string(data) != "term\n" {
		t.Errorf("the supervisor did not get SIGTERM: %q", data)
	}
}

// TestRunBacksOff: a supervisor that keeps failing is started again less
// and less often.
func TestRunBacksOff(t *testing.T) {
	dir := t.TempDir()
	startKeeper(t, dir, `date +%s%N >> "$DIR/starts"; exit 1`)
	var times []int64
	testsupport.PollUntil(t, "five starts", 10*time.Second, func() bool {
		data, _ := os.ReadFile(filepath.Join(dir, "starts"))
		times = times[:0]
		for _, f := range strings.Fields(string(data)) {
			n, _ := strconv.ParseInt(f, 10, 64)
			times = append(times, n)
		}
		return len(times) >= 5
	})
	for i := 2; i < 5; i++ {
		prev, gap := times[i-1]-times[i-2], times[i]-times[i-1]
		if gap < prev {
			t.Errorf("start gaps %v: gap %d shorter than the one before", times, i)
		}
	}
}

func TestNextBackoff(t *testing.T) {
	k := &keeper{}
	k.supStart = time.Now()
	var got []time.Duration
	for range 8 {
		got = append(got, k.nextBackoff())
	}
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("backoffs %v, want %v ms", got, want)
		}
	}
	k.supStart = time.Now().Add(-stableRun)
	if d := k.nextBackoff(); d != 0 {
		t.Errorf("after a stable run: %v, want 0", d)
	}
	if d := (&keeper{}).nextBackoff(); d != firstBackoff {
		t.Errorf("never started: %v", d)
	}
}

func TestWaitStatus(t *testing.T) {
	for _, tc := range []struct {
		code, status int32
		exited       bool
		exit         int
		signal       syscall.Signal
		core         bool
	}{
		{cldExited, 0, true, 0, 0, false},
		{cldExited, 5, true, 5, 0, false},
		{cldExited, 255, true, 255, 0, false},
		{cldKilled, 9, false, -1, syscall.SIGKILL, false},
		{cldKilled, 15, false, -1, syscall.SIGTERM, false},
		{cldDumped, 11, false, -1, syscall.SIGSEGV, true},
	} {
		ws := waitStatus(tc.code, tc.status)
		if ws.Exited() != tc.exited || ws.ExitStatus() != tc.exit || (!tc.exited && (ws.Signal() != tc.signal || ws.CoreDump() != tc.core)) {
			t.Errorf("code %d status %d: %#x", tc.code, tc.status, uint32(ws))
		}
	}
	if got := describe(waitStatus(cldKilled, 9)); got != "signal 9" {
		t.Errorf("describe: %q", got)
	}
	if got := describe(waitStatus(cldExited, 2)); got != "exit 2" {
		t.Errorf("describe: %q", got)
	}
}

// TestWaitNoWait: the status comes as wait4 would give it, and the child
// stays to be reaped.
func TestWaitNoWait(t *testing.T) {
	for _, tc := range []struct {
		script string
		want   func(unix.WaitStatus) bool
	}{
		{"exit 4", func(ws unix.WaitStatus) bool { return ws.Exited() && ws.ExitStatus() == 4 }},
		{"kill -9 $$", func(ws unix.WaitStatus) bool { return ws.Signaled() && ws.Signal() == unix.SIGKILL }},
	} {
		cmd := exec.Command("/bin/sh", "-c", tc.script)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		var ws unix.WaitStatus
		var got int
		testsupport.PollUntil(t, "the child's end", 5*time.Second, func() bool {
			var err error
			got, ws, err = waitNoWait()
			return err == nil && got == pid
		})
		if !tc.want(ws) {
			t.Errorf("%s: status %#x", tc.script, uint32(ws))
		}
		if _, err := StartTime(pid); err != nil {
			t.Errorf("%s: reaped by waitNoWait: %v", tc.script, err)
		}
		cmd.Wait()
	}
	if pid, _, err := waitNoWait(); pid != 0 || !errors.Is(err, unix.ECHILD) {
		t.Errorf("no child: %d %v", pid, err)
	}
}

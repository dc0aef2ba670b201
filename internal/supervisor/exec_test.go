package supervisor_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/supervisor/client"
	"github.com/berth-cri/berth/internal/testsupport"
)

// execProc is the process spec of an exec running sh -c script.
func execProc(script string) *specs.Process {
	return &specs.Process{Args: []string{"sh", "-c", script}, Env: []string{"PATH=/bin"}, Cwd: "/"}
}

// startExec runs script in id with a stdout pipe, returned for reading.
func startExec(t *testing.T, c *client.Client, id, script string) (*client.ExecSession, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Exec(testCtx(t), id, v1.ExecRequest{Process: execProc(script), Stdout: true}, []*os.File{w})
	w.Close()
	if err != nil {
		r.Close()
		t.Fatalf("exec: %v", err)
	}
	t.Cleanup(func() { s.Close(); r.Close() })
	return s, r
}

func TestExec(t *testing.T) {
	c, _ := startSupervisor(t)
	run(t, c, "ex", v1.CreateRequest{Bundle: bundle(t, "ex", "sleep 1000")})
	s, r := startExec(t, c, "ex", "echo hello; exit 7")
	out, _ := io.ReadAll(r)
	code, err := s.Wait()
	if err != nil || code != 7 || string(out) != "hello\n" {
		t.Fatalf("exit %d, %v, output %q; want 7 and hello", code, err, out)
	}
	for _, tc := range []struct {
		name string
		id   string
		req  v1.ExecRequest
		want error
	}{
		{"unknown container", "nope", v1.ExecRequest{Process: execProc("true")}, errdefs.ErrNotFound},
		{"no command", "ex", v1.ExecRequest{}, errdefs.ErrInvalidArgument},
		{"files missing", "ex", v1.ExecRequest{Process: execProc("true"), Stdout: true}, errdefs.ErrInvalidArgument},
	} {
		if _, err := c.Exec(testCtx(t), tc.id, tc.req, nil); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// A command that cannot run comes back as libcontainer's message.
	if _, err := c.Exec(testCtx(t), "ex", v1.ExecRequest{Process: &specs.Process{Args: []string{"nosuch"}, Env: []string{"PATH=/bin"}}}, nil); err == nil || !strings.Contains(err.Error(), "executable file not found") {
		t.Errorf("missing command: %v", err)
	}
	if err := c.Kill(testCtx(t), "ex", syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	wait(t, c, "ex")
	if _, err := c.Exec(testCtx(t), "ex", v1.ExecRequest{Process: execProc("true")}, nil); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("exec into a stopped container: %v, want ErrFailedPrecondition", err)
	}
}

// TestExecKillAndHangup: Kill (and a client that goes away) end the whole
// exec'd tree, not only its first process.
func TestExecKillAndHangup(t *testing.T) {
	c, _ := startSupervisor(t)
	run(t, c, "kt", v1.CreateRequest{Bundle: bundle(t, "kt", "sleep 1000")})
	for _, end := range []string{"kill", "close"} {
		s, r := startExec(t, c, "kt", "sleep 1000 & echo $!; sleep 1000")
		line := make([]byte, 32)
		n, _ := r.Read(line)
		child := strings.TrimSpace(string(line[:n])) // pid in the container's namespace
		if _, err := strconv.Atoi(child); err != nil {
			t.Fatalf("%s: background pid %q", end, child)
		}
		pidfd, err := unix.Dup(int(s.Pidfd.Fd())) // outlives Close
		if err != nil {
			t.Fatal(err)
		}
		if end == "kill" {
			s.Kill()
			if code, err := s.Wait(); err != nil || code != 128+int(syscall.SIGKILL) {
				t.Fatalf("kill: exit %d %v", code, err)
			}
		} else {
			s.Close()
		}
		f := os.NewFile(uintptr(pidfd), "pidfd")
		waitPidfd(t, f)
		f.Close()
		// Only the container's init remains in the cgroup.
		testsupport.PollUntil(t, end+": the tree to die", 10*time.Second, func() bool { return len(cgroupProcs(t, "kt")) == 1 })
	}
}

// TestExecSupervisorGone: with the supervisor killed mid-exec, the client
// kills the process through its pidfd and reports the exit as unknown.
func TestExecSupervisorGone(t *testing.T) {
	c, stateDir := startSupervisor(t)
	run(t, c, "sg", v1.CreateRequest{Bundle: bundle(t, "sg", "sleep 1000")})
	s, _ := startExec(t, c, "sg", "sleep 1000")
	v, err := c.Version(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	syscall.Kill(v.Pid, syscall.SIGKILL)
	done := make(chan error, 1)
	go func() { _, err := s.Wait(); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, errdefs.ErrUnavailable) {
			t.Fatalf("wait: %v, want ErrUnavailable", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait did not return after the supervisor died")
	}
	waitPidfd(t, s.Pidfd)
	ensure(t, stateDir) // for the cleanup
}

// TestExecOrphansReaped: in a host-PID container, what an exec leaves
// behind is reparented to the supervisor (a subreaper) and reaped when it
// ends, not left a zombie.
func TestExecOrphansReaped(t *testing.T) {
	c, _ := startSupervisor(t)
	run(t, c, "or", v1.CreateRequest{Bundle: bundle(t, "or", "sleep 1000", hostPID)})
	v, err := c.Version(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	s, r := startExec(t, c, "or", "sleep 0.2 & echo $!")
	out, _ := io.ReadAll(r)
	if code, err := s.Wait(); err != nil || code != 0 {
		t.Fatalf("exec: %d %v", code, err)
	}
	orphan, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("orphan pid %q", out)
	}
	testsupport.PollUntil(t, "the orphan to be reaped", 10*time.Second, func() bool {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", orphan))
		if err != nil {
			return true
		}
		// Still running, or a zombie of someone else: not ours to judge.
		i := strings.LastIndexByte(string(data), ')')
		f := strings.Fields(string(data[i+1:]))
		return len(f) > 1 && f[1] != strconv.Itoa(v.Pid)
	})
}

func waitPidfd(t *testing.T, pidfd *os.File) {
	t.Helper()

	fds := []unix.PollFd{{Fd: int32(pidfd.Fd()), Events: unix.POLLIN}}
	if n, err := unix.Poll(fds, 10000); n != 1 || err != nil {
		t.Fatalf("exec'd process still running (%d, %v)", n, err)
	}
}

// cgroupProcs lists the processes in test container id's pids cgroup.
func cgroupProcs(t *testing.T, id string) []string {
	t.Helper()
	data, err := os.ReadFile("/sys/fs/cgroup/pids/berth-test/" + id + "/cgroup.procs")
	if err != nil {
		data, err = os.ReadFile("/sys/fs/cgroup/berth-test/" + id + "/cgroup.procs") // cgroup v2
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(data))
}

// TestExecCommand: the supervisor builds the exec'd process from the
// container's bundle (issue 17: berthd decoded the spec and sent the whole
// environment on every probe, over the 1 MiB request cap for a container
// with a large one), applying only the request's command and overrides.
func TestExecCommand(t *testing.T) {
	c, _ := startSupervisor(t)
	big := make([]string, 0, 1600)
	for i := range cap(big) {
		big = append(big, fmt.Sprintf("BIG_%04d=%s", i, strings.Repeat("x", 1000)))
	}
	run(t, c, "xc", v1.CreateRequest{Bundle: bundle(t, "xc", "sleep 1000", func(s *specs.Spec) {
		s.Process.Env = append([]string{"PATH=/bin", "KEEP=kept", "FOO=from-spec"}, big...)
		s.Process.Cwd = "/tmp"
		s.Process.User = specs.User{UID: 1234, GID: 4321}
	})})
	const script = `echo "$FOO $KEEP $NEW $(pwd) $(id -u):$(id -g) ${#BIG_1599}"`
	for _, tc := range []struct {
		name string
		req  v1.ExecRequest
		want string
	}{
		{"the container's process", v1.ExecRequest{Args: []string{"sh", "-c", script}}, "from-spec kept  /tmp 1234:4321 1000\n"},
		{"overrides", v1.ExecRequest{Args: []string{"sh", "-c", script}, Env: []string{"FOO=over", "NEW=added"}, Cwd: "/", User: &specs.User{UID: 7, GID: 8}}, "over kept added / 7:8 1000\n"},
	} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		tc.req.Stdout = true
		s, err := c.ExecCommand(testCtx(t), "xc", tc.req, []*os.File{w})
		w.Close()
		if err != nil {
			r.Close()
			t.Fatalf("%s: %v", tc.name, err)
		}
		out, _ := io.ReadAll(r)
		r.Close()
		code, err := s.Wait()
		s.Close()
		if err != nil || code != 0 || string(out) != tc.want {
			t.Errorf("%s: exit %d %v, output %q, want %q", tc.name, code, err, out, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		req  v1.ExecRequest
	}{
		{"no command", v1.ExecRequest{}},
		{"empty command", v1.ExecRequest{Args: []string{""}}},
		{"a process too", v1.ExecRequest{Args: []string{"true"}, Process: execProc("true")}},
	} {
		if _, err := c.ExecCommand(testCtx(t), "xc", tc.req, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", tc.name, err)
		}
	}
}

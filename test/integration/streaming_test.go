package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-cri/berth/internal/testsupport"
	"github.com/berth-cri/berth/test/internal/harness"
)

// berthdChildren lists the processes whose parent is berthd (exec'd
// processes and their runtime helpers), as "pid comm state"; the
// supervisor berthd started is not counted.
func berthdChildren(pid int) []string {
	var out []string
	stats, _ := os.ReadDir("/proc")
	for _, e := range stats {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if len(f) > 1 && f[1] == fmt.Sprint(pid) && !strings.Contains(string(cmdline), "berth-supervisor") {
			comm := string(b[strings.IndexByte(string(b), '(')+1 : strings.LastIndexByte(string(b), ')')])
			out = append(out, e.Name()+" "+comm+" "+f[0])
		}
	}
	return out
}

// TestExecSyncParallel runs 100 ExecSyncs at once, mixing plain commands,
// failures, timeouts and large outputs, checks every answer, and checks
// that berthd is left with no extra children, fds or threads.
func TestExecSyncParallel(t *testing.T) {
	e := newPodEnv(t, "execsync")
	id := e.run(t, e.containerConfig("target", "sleep", "1000"))
	ctx := context.Background()
	pid := e.d.Cmd.Process.Pid
	// Warm up (first exec loads what stays loaded).
	if _, _, err := e.rt.ExecSync(ctx, id, []string{"true"}, 0); err != nil {
		t.Fatal(err)
	}
	fds := func() int { return harness.CountFDs(pid) }
	threads := func() int { return harness.ProcStatus(pid, "Threads") }
	fdsBefore, threadsBefore := fds(), threads()

	type call struct {
		cmd     []string
		timeout time.Duration
		check   func(stdout, stderr []byte, err error) error
	}
	exitIs := func(code int) func([]byte, []byte, error) error {
		return func(_, _ []byte, err error) error {
			var ee interface{ ExitStatus() int }
			if code == 0 {
				return err
			}
			if !errors.As(err, &ee) || ee.ExitStatus() != code {
				return fmt.Errorf("err %v, want exit %d", err, code)
			}
			return nil
		}
	}
	kinds := []call{
		{[]string{"sh", "-c", "echo out; echo err >&2"}, 0, func(o, s []byte, err error) error {
			if err != nil || string(o) != "out\n" || string(s) != "err\n" {
				return fmt.Errorf("%q %q %v", o, s, err)
			}
			return nil
		}},
		{[]string{"sh", "-c", "exit 3"}, 0, exitIs(3)},
		{[]string{"no-such-command"}, 0, exitIs(127)},
		{[]string{"sleep", "100"}, time.Second, func(_, _ []byte, err error) error {
			// berthd answers DeadlineExceeded; kubelet's client turns that
			// into its own timeout error, which is what probes act on.
			if err == nil || !strings.Contains(err.Error(), "timed out") {
				return fmt.Errorf("timeout: %v", err)
			}
			return nil
		}},
		{[]string{"sh", "-c", "head -c 2000000 /dev/zero"}, 0, func(o, _ []byte, err error) error {
			if err != nil || len(o) != 2000000 {
				return fmt.Errorf("large output: %d bytes, %v", len(o), err)
			}
			return nil
		}},
	}
	// round runs 100 ExecSyncs at once and checks every answer.
	round := func() {
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for i := 0; i < 100; i++ {
			c := kinds[i%len(kinds)]
			wg.Add(1)
			go func() {
				defer wg.Done()
				o, s, err := e.rt.ExecSync(ctx, id, c.cmd, c.timeout)
				if cerr := c.check(o, s, err); cerr != nil {
					errs <- fmt.Errorf("%v: %w", c.cmd, cerr)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
	settled := func(what string, threadsMax int) {
		if !testsupport.Poll(15*time.Second, 100*time.Millisecond, func() bool {
			return len(berthdChildren(pid)) == 0 && fds() <= fdsBefore && threads() <= threadsMax
		}) {
			t.Fatalf("berthd after %s: children %v, %d fds (was %d), %d threads (limit %d)",
				what, berthdChildren(pid), fds(), fdsBefore, threads(), threadsMax)
		}
	}
	// Go keeps the OS threads that concurrent blocking calls needed, sized
	// by the peak of one round; a thread leaked per exec would add 100 a
	// round, so three rounds must stay well under that.
	for i := 1; i <= 3; i++ {
		round()
		settled(fmt.Sprintf("%d execs", 100*i), threadsBefore+100)
	}
	// No exec'd process is left in the container either.
	o, _, err := e.rt.ExecSync(ctx, id, []string{"sh", "-c", "ps -o comm | grep -c sleep"}, 0)
	if err != nil || strings.TrimSpace(string(o)) != "1" {
		t.Errorf("sleep processes in the container: %q %v", o, err)
	}
	// Unknown or stopped containers: NotFound / FailedPrecondition, not a hang.
	if _, _, err := e.rt.ExecSync(ctx, strings.Repeat("ef", 32), []string{"true"}, 0); status.Code(err) != codes.NotFound {
		t.Errorf("exec in unknown container: %v", err)
	}
	e.rt.StopContainer(ctx, id, 0)
	if _, _, err := e.rt.ExecSync(ctx, id, []string{"true"}, 0); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("exec in stopped container: %v", err)
	}
}

func (e *podEnv) crictl(args ...string) *exec.Cmd {
	ep := e.d.Endpoint()
	cmd := exec.Command("crictl", append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep}, args...)...)
	cmd.Env = append(os.Environ(), "CRI_CONFIG_FILE=/dev/null")
	return cmd
}

// TestCrictlStreaming drives the streaming server the way operators do:
// an interactive shell through crictl exec -it (under a pty made by
// script), attach to live output, and port-forward to a web server.
func TestCrictlStreaming(t *testing.T) {
	if _, err := exec.LookPath("crictl"); err != nil {
		t.Fatalf("crictl is needed (test/conformance/harness/install-tools.sh): %v", err)
	}
	if _, err := exec.LookPath("script"); err != nil {
		t.Fatalf("script (util-linux) is needed: %v", err)
	}
	e := newPodEnv(t, "streams")
	cfg := e.containerConfig("shell", "sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done")
	id := e.run(t, cfg)

	// crictl exec -it: a tty shell whose commands run and whose exit code comes back.
	cmdline := strings.Join(e.crictl("exec", "-it", id, "sh").Args, " ")
	sh := exec.Command("script", "-qec", cmdline, "/dev/null")
	sh.Env = append(os.Environ(), "CRI_CONFIG_FILE=/dev/null")
	in, _ := sh.StdinPipe()
	var out harness.SyncBuffer
	sh.Stdout, sh.Stderr = &out, &out
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(in, "tty; echo shell-$((6*7))\n")
	harness.WaitFor(t, "the shell's answer", 10*time.Second, func() bool { return out.Contains("shell-42") })
	io.WriteString(in, "exit 0\n")
	sh.Wait()
	if !out.Contains("/dev/pts/") {
		t.Errorf("exec -it gave no tty:\n%s", out.String())
	}

	// crictl attach: live output.
	att := e.crictl("attach", id)
	var attOut harness.SyncBuffer
	att.Stdout = &attOut
	if err := att.Start(); err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, "live output through attach", 10*time.Second, func() bool { return attOut.Contains("tick") })
	att.Process.Kill()
	att.Wait()

	// crictl port-forward to a busybox httpd in the pod.
	e.run(t, e.containerConfig("web", "sh", "-c", "mkdir -p /www && echo forwarded > /www/index.html && exec httpd -f -p 8080 -h /www"))
	port := harness.FreePort(t)
	pf := e.crictl("port-forward", e.pod, fmt.Sprintf("%d:8080", port))
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { pf.Process.Kill(); pf.Wait() }()
	var body string
	harness.WaitFor(t, "the forwarded port", 15*time.Second, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		return true
	})
	if !strings.Contains(body, "forwarded") {
		t.Errorf("port-forward answered %q", body)
	}
}

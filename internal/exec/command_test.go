package exec

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/supervisor/client"
)

// bigEnv is 1.5 MiB of environment: over the supervisor's 1 MiB request
// cap, well within what CreateContainer accepts and execve takes.
func bigEnv() []string {
	env := make([]string, 0, 1536)
	for i := range cap(env) {
		env = append(env, fmt.Sprintf("BIG_%04d=%s", i, strings.Repeat("x", 1014)))
	}
	return env
}

// TestSyncBigEnvironment: an exec probe in a container with 1.5 MiB of
// environment answers, and berthd decodes no spec for it (issue 17: the
// whole process went to the supervisor with every probe, and its request
// cap refused it).
func TestSyncBigEnvironment(t *testing.T) {
	spec := testSpec("bigenv")
	spec.Process.Env = append(spec.Process.Env, bigEnv()...)
	tg := runLibcontainerSpec(t, "bigenv", spec)
	tg.Spec = func() (*specs.Spec, error) {
		t.Error("the spec was read for a libcontainer exec")
		return spec, nil
	}
	stdout, stderr, code, err := testExecer().Sync(testCtx(t), tg, []string{"sh", "-c", `echo ${#BIG_1535} $BERTH_TEST $(id -u) $(pwd)`}, 0, 0)
	if err != nil || code != 0 || string(stdout) != "1014 exec-env 1234 /work\n" {
		t.Fatalf("exit %d %v, stdout %q, stderr %q", code, err, stdout, stderr)
	}
}

// TestExecOlderSupervisor: a supervisor before protocol 1.5 does not know
// OpExecCommand; the exec then goes as OpExec with the whole process,
// built from the container's spec, and the same stdio.
func TestExecOlderSupervisor(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "supervisor", "supervisor.sock")
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type seen struct {
		op        supv1.Op
		req       supv1.ExecRequest
		withFiles bool
	}
	got := make(chan seen, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			uc := c.(*net.UnixConn)
			buf, oob := make([]byte, 64<<10), make([]byte, 256)
			n, oobn, _, _, _ := uc.ReadMsgUnix(buf, oob)
			line, _ := bufio.NewReader(strings.NewReader(string(buf[:n]))).ReadBytes('\n')
			var req supv1.Request
			json.Unmarshal(line, &req)
			got <- seen{req.Op, *req.Exec, closeRights(oob[:oobn]) > 0}
			// What a 1.4 supervisor answers: OpExecCommand is unknown;
			// OpExec is refused here only to end the test early.
			resp := supv1.Response{Error: supv1.Errorf(supv1.CodeUnimplemented, "unknown operation %q", req.Op)}
			if req.Op == supv1.OpExec {
				resp.Error = supv1.Errorf(supv1.CodeFailedPrecondition, "container is not running")
			}
			data, _ := json.Marshal(resp)
			uc.Write(append(data, '\n'))
			uc.Close()
		}
	}()
	spec := testSpec("old")
	reads := 0
	tg := Target{ID: "old", Kind: supv1.RuntimeLibcontainer, Spec: func() (*specs.Spec, error) { reads++; return spec, nil }}
	e := New(nil, client.New(dir))
	_, _, _, err = e.Sync(testCtx(t), tg, []string{"echo", "hi"}, 0, 0)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("Sync: %v, want the OpExec answer (ErrFailedPrecondition)", err)
	}
	first, second := <-got, <-got
	if first.op != supv1.OpExecCommand || first.req.Process != nil || !slices.Equal(first.req.Args, []string{"echo", "hi"}) || !first.req.Stdout || !first.req.Stderr || !first.withFiles {
		t.Errorf("first request: %+v", first)
	}
	if second.op != supv1.OpExec || second.req.Process == nil || !second.withFiles || !second.req.Stdout || !second.req.Stderr {
		t.Fatalf("second request: %+v", second)
	}
	p := second.req.Process
	if !slices.Equal(p.Args, []string{"echo", "hi"}) || !slices.Equal(p.Env, spec.Process.Env) || p.User.UID != 1234 || p.Cwd != "/work" || p.Terminal {
		t.Errorf("OpExec process: %+v", p)
	}
	if reads != 1 {
		t.Errorf("spec read %d times, want once (for the older supervisor)", reads)
	}
}

// closeRights closes the descriptors received in oob and counts them.
func closeRights(oob []byte) int {
	n := 0
	msgs, _ := unix.ParseSocketControlMessage(oob)
	for i := range msgs {
		fds, _ := unix.ParseUnixRights(&msgs[i])
		for _, fd := range fds {
			unix.Close(fd)
			n++
		}
	}
	return n
}

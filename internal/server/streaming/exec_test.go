package streaming

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestExecSync(t *testing.T) {
	l := newLookup()
	sup := startSupervisor(t)
	l.execs["c1"] = runContainer(t, sup, "c1")
	s := newService(t, l, sup)
	ctx := testCtx(t)
	for _, tc := range []struct {
		name     string
		req      *runtimeapi.ExecSyncRequest
		code     codes.Code
		exit     int32
		out, err string
	}{
		{name: "exit 3", req: &runtimeapi.ExecSyncRequest{ContainerId: "c1", Cmd: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}}, exit: 3, out: "out\n", err: "err\n"},
		{name: "not found", req: &runtimeapi.ExecSyncRequest{ContainerId: "c1", Cmd: []string{"nope"}}, exit: 127, err: `exec: "nope": executable file not found in $PATH`},
		{name: "timeout", req: &runtimeapi.ExecSyncRequest{ContainerId: "c1", Cmd: []string{"sleep", "100"}, Timeout: 1}, code: codes.DeadlineExceeded},
		{name: "unknown container", req: &runtimeapi.ExecSyncRequest{ContainerId: "c2", Cmd: []string{"true"}}, code: codes.NotFound},
		{name: "empty command", req: &runtimeapi.ExecSyncRequest{ContainerId: "c1"}, code: codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			resp, err := s.ExecSync(ctx, tc.req)
			if got := errdefs.Code(err); got != tc.code {
				t.Fatalf("code %s (%v), want %s", got, err, tc.code)
			}
			if tc.code == codes.DeadlineExceeded && time.Since(start) > 5*time.Second {
				t.Fatalf("timeout took %s", time.Since(start))
			}
			if err != nil {
				return
			}
			if resp.ExitCode != tc.exit || string(resp.Stdout) != tc.out || string(resp.Stderr) != tc.err {
				t.Fatalf("reply %d %q %q", resp.ExitCode, resp.Stdout, resp.Stderr)
			}
		})
	}
}

func TestExecURL(t *testing.T) {
	l := newLookup()
	sup := startSupervisor(t)
	l.execs["c1"] = runContainer(t, sup, "c1")
	s := newService(t, l, sup)
	ctx := testCtx(t)
	if _, err := s.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "gone", Cmd: []string{"true"}, Stdout: true}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("exec in unknown container: %v", err)
	}
	if _, err := s.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"true"}}); errdefs.Code(err) != codes.InvalidArgument {
		t.Fatalf("exec without streams: %v", err)
	}

	t.Run("pipes and exit code", func(t *testing.T) {
		resp, err := s.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"sh", "-c", "cat; echo err >&2; exit 3"}, Stdin: true, Stdout: true, Stderr: true})
		if err != nil {
			t.Fatal(err)
		}
		sess := runSession(t, resp.Url, strings.NewReader("hello\n"), true, false, nil, nil)
		if sess.stdout.String() != "hello\n" || sess.stderr.String() != "err\n" {
			t.Fatalf("stdout %q stderr %q", sess.stdout.String(), sess.stderr.String())
		}
		if !strings.Contains(sess.status, remotecommand.NonZeroExitCodeReason) || !strings.Contains(sess.status, `"message":"3"`) {
			t.Fatalf("status %s, want exit code 3", sess.status)
		}
		// A URL is single-use.
		if r, err := httpGet(resp.Url); err == nil && r != 404 {
			t.Fatalf("second use of the URL: HTTP %d", r)
		}
	})
	t.Run("success", func(t *testing.T) {
		resp, err := s.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"echo", "ok"}, Stdout: true})
		if err != nil {
			t.Fatal(err)
		}
		sess := runSession(t, resp.Url, nil, false, false, nil, nil)
		if sess.stdout.String() != "ok\n" || !strings.Contains(sess.status, `"Success"`) {
			t.Fatalf("stdout %q status %s", sess.stdout.String(), sess.status)
		}
	})
	t.Run("tty with resize", func(t *testing.T) {
		resp, err := s.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"sh", "-c", `tty; i=0; while s=$(stty size 2>/dev/null); [ -z "$s" -o "$s" = "0 0" ] && [ $i -lt 1000 ]; do i=$((i+1)); sleep 0.01; done; stty size; exit 4`}, Stdout: true, Tty: true})
		if err != nil {
			t.Fatal(err)
		}
		// kubectl sends the initial size right after creating the streams;
		// it reaches the pty asynchronously, so the command polls for it
		// (busybox's stty size fails on a 0x0 terminal rather than print it).
		sess := runSession(t, resp.Url, nil, false, true, []remotecommand.TerminalSize{{Width: 100, Height: 30}}, nil)
		out := sess.stdout.String()
		if !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "30 100") || !strings.Contains(sess.status, `"message":"4"`) {
			t.Fatalf("tty output %q status %s", out, sess.status)
		}
	})
}

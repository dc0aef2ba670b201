package exec

import (
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/berth-cri/berth/internal/testsupport"
)

func TestStreamPipes(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			tg := k.run(t, "stream-"+k.name)
			var out, errb testsupport.SyncBuffer
			code, err := testExecer().Stream(testCtx(t), tg, []string{"sh", "-c", "cat; echo err >&2; exit 4"},
				strings.NewReader("hello\n"), &out, &errb, false, nil)
			if err != nil || code != 4 {
				t.Fatalf("code %d err %v", code, err)
			}
			if out.String() != "hello\n" || errb.String() != "err\n" || !out.Closed() || !errb.Closed() {
				t.Fatalf("stdout %q stderr %q (closed %v %v)", out.String(), errb.String(), out.Closed(), errb.Closed())
			}
			code, err = testExecer().Stream(testCtx(t), tg, []string{"nope"}, nil, &out, &errb, false, nil)
			if err != nil || code != 127 || !strings.Contains(errb.String(), "executable file not found") {
				t.Fatalf("missing command: code %d err %v stderr %q", code, err, errb.String())
			}
		})
	}
}

func TestStreamTTY(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			tg := k.run(t, "tty-"+k.name)
			inR, inW := io.Pipe()
			defer inW.Close()
			resize := make(chan remotecommand.TerminalSize)
			var out testsupport.SyncBuffer
			type result struct {
				code int
				err  error
			}
			done := make(chan result, 1)
			go func() {
				code, err := testExecer().Stream(testCtx(t), tg, []string{"sh", "-c", `tty; while read x; do [ "$x" = q ] && exit 5; stty size; done`}, inR, &out, nil, true, resize)
				done <- result{code, err}
			}()
			testsupport.PollUntil(t, "tty output", 10*time.Second, func() bool { return strings.Contains(out.String(), "/dev/pts/") })
			if !regexp.MustCompile(`^/dev/pts/\d+\r?\n`).MatchString(out.String()) {
				t.Fatalf("tty printed %q", out.String())
			}
			// The second send returns only once the first was applied.
			for range 2 {
				select {
				case resize <- remotecommand.TerminalSize{Width: 123, Height: 45}:
				case <-time.After(10 * time.Second):
					t.Fatal("resize not consumed")
				}
			}
			// For the oci kind the size travels asynchronously (SIGWINCH to
			// the runtime): ask until it arrived.
			testsupport.PollUntil(t, "stty size to show the new size", 10*time.Second, func() bool {
				inW.Write([]byte("go\n"))
				return strings.Contains(out.String(), "45 123")
			})
			inW.Write([]byte("q\n"))
			var res result
			select {
			case res = <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("tty exec did not end")
			}
			if res.err != nil || res.code != 5 {
				t.Fatalf("code %d err %v, output %q", res.code, res.err, out.String())
			}
		})
	}
}

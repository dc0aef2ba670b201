package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/testsupport"
)

// TestFailedCreateLinesCarryTheRequestID is issue 18's acceptance for
// request-scoped logs: a CreateContainer that fails inside the supervisor
// (the command does not exist in the image: the init's lookup fails at
// create) answers an error naming its request, and every line the request
// caused, in berthd's log and in the supervisor's, carries that id. The
// window is quiet (the pod is up, nothing else is asked meanwhile), so
// every line written during the call is one it caused.
func TestFailedCreateLinesCarryTheRequestID(t *testing.T) {
	e := startPodEnv(t, "reqid", "", "")
	supLog := filepath.Join(e.d.Dir, "run", "supervisor", "supervisor.log")
	berthdFrom := len(e.d.Logs.String())
	supFrom := len(readFile(t, supLog))
	// berthd's stderr reaches the harness through a pipe, so lines of the
	// pod's own requests may still arrive after berthdFrom was taken (CI saw
	// RunPodSandbox's "done" line there). Lines stamped before the call are
	// not the create's.
	callStart := time.Now()

	s := e.createErr(t, e.containerConfig("missing", "/no-such-command"))

	m := regexp.MustCompile(`\(request ([0-9a-f]+)\)$`).FindStringSubmatch(s.Message())
	if m == nil {
		t.Fatalf("the error does not name its request: %v", s.Err())
	}
	id := m[1]
	// berthd's stderr reaches the harness through a pipe: the
	// interceptor's line, the request's last, may still be on its way.
	testsupport.PollUntil(t, "berthd's line for the failed request", 5*time.Second, func() bool {
		return anyLineHasAll(newLines(e.d.Logs.String(), berthdFrom), []string{"msg=failed", "request_id=" + id})
	})
	berthdLines := since(newLines(e.d.Logs.String(), berthdFrom), callStart)
	supLines := since(newLines(readFile(t, supLog), supFrom), callStart)
	want := "request_id=" + id
	for name, lines := range map[string][]string{"berthd": berthdLines, "supervisor": supLines} {
		if len(lines) == 0 {
			t.Errorf("%s logged nothing about the failed create", name)
		}
		for _, l := range lines {
			if !strings.Contains(l, want) {
				t.Errorf("%s line without %s: %s", name, want, l)
			}
		}
	}
	// The lines that say what failed: the supervisor's answer and the
	// interceptor's, each naming the RPC or operation.
	for _, w := range []struct {
		name  string
		lines []string
		subs  []string
	}{
		{"berthd's failed line", berthdLines, []string{"msg=failed", "rpc=CreateContainer", "/no-such-command"}},
		{"the supervisor's failed line", supLines, []string{"msg=failed", "op=create", "/no-such-command"}},
	} {
		if !anyLineHasAll(w.lines, w.subs) {
			t.Errorf("no line with %q among\n%s", w.subs, strings.Join(w.lines, "\n"))
		}
	}
	if t.Failed() {
		t.Logf("berthd:\n%s\nsupervisor:\n%s", strings.Join(berthdLines, "\n"), strings.Join(supLines, "\n"))
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// newLines are the non-empty lines of log past offset from.
func newLines(log string, from int) []string {
	var out []string
	for _, l := range strings.Split(log[from:], "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

var logTime = regexp.MustCompile(`^time="([^"]+)"`)

// since drops the lines whose logrus timestamp is before t. A line without
// one is kept, so it is still checked.
func since(lines []string, t time.Time) []string {
	var out []string
	for _, l := range lines {
		if m := logTime.FindStringSubmatch(l); m != nil {
			if at, err := time.Parse(time.RFC3339Nano, m[1]); err == nil && at.Before(t) {
				continue
			}
		}
		out = append(out, l)
	}
	return out
}

func anyLineHasAll(lines, subs []string) bool {
	for _, l := range lines {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(l, s)
		}
		if all {
			return true
		}
	}
	return false
}

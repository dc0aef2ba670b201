package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/berth-cri/berth/api/supervisor/v1"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/supervisor/client"
	"github.com/berth-cri/berth/internal/testsupport"
)

type attached struct {
	a        *client.Attachment
	out, err testsupport.SyncBuffer
	done     chan error
}

func attach(t *testing.T, c *client.Client, id string) *attached {
	t.Helper()
	a, err := c.Attach(testCtx(t), id)
	if err != nil {
		t.Fatalf("attach %s: %v", id, err)
	}
	at := &attached{a: a, done: make(chan error, 1)}
	go func() { at.done <- a.Copy(&at.out, &at.err) }()
	t.Cleanup(func() { a.Close() })
	return at
}

// consecutive checks that lines are lineK, lineK+1, … without a gap.
func consecutive(t *testing.T, out string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	var first int
	for i, l := range lines {
		var n int
		if _, err := fmtSscanf(l, &n); err != nil {
			t.Fatalf("attached output line %q: %v", l, err)
		}
		if i == 0 {
			first = n
		} else if n != first+i {
			t.Fatalf("attached output has a gap at %q (after line%d)", l, first+i-1)
		}
	}
	return lines
}

func TestAttachLiveOutput(t *testing.T) {
	c, dir := startSupervisor(t)
	logPath := dir + "/attach.log"
	run(t, c, "counter", v1.CreateRequest{Bundle: bundle(t, "counter", counterScript+` & while true; do echo err >&2; sleep 0.05; done`), LogPath: logPath})
	waitLines(t, logPath, 5)
	a1, a2 := attach(t, c, "counter"), attach(t, c, "counter")
	if a1.a.State.Status != v1.StatusRunning {
		t.Fatalf("attach state %+v", a1.a.State)
	}
	testsupport.PollUntil(t, "both attachers to see 20 lines", 10*time.Second, func() bool {
		return strings.Count(a1.out.String(), "\n") >= 20 && strings.Count(a2.out.String(), "\n") >= 20
	})
	testsupport.PollUntil(t, "stderr output", 10*time.Second, func() bool { return strings.Contains(a1.err.String(), "err\n") })
	// The first detaches; the second keeps seeing output.
	a1.a.Close()
	<-a1.done
	n := strings.Count(a2.out.String(), "\n")
	testsupport.PollUntil(t, "more output after a detach", 10*time.Second, func() bool { return strings.Count(a2.out.String(), "\n") >= n+10 })

	ctx := testCtx(t)
	c.Kill(ctx, "counter", syscall.SIGKILL, true)
	wait(t, c, "counter")
	select {
	case err := <-a2.done:
		if err != nil {
			t.Fatalf("attach ended with %v, want nil at the end of output", err)
		}
	case <-time.After(testsupport.Slow(10 * time.Second)):
		t.Fatal("attach did not end with the container")
	}
	lines := consecutive(t, a2.out.String())
	// The log got everything, including what the attachers saw.
	logged := messages(readLog(t, logPath), "stdout")
	checkSequence(t, logged)
	if len(logged) < len(lines) {
		t.Fatalf("log has %d lines, the attacher saw %d", len(logged), len(lines))
	}
	// Attaching to a stopped container ends at once.
	at := attach(t, c, "counter")
	if err := <-at.done; err != nil || at.a.State.Status != v1.StatusStopped {
		t.Fatalf("attach to stopped: %v %+v", err, at.a.State)
	}
	if _, err := c.Attach(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("attach to unknown: %v", err)
	}
}

func TestAttachStdin(t *testing.T) {
	c, dir := startSupervisor(t)
	logPath := dir + "/stdin.log"
	run(t, c, "cat", v1.CreateRequest{Bundle: bundle(t, "cat", "cat"), LogPath: logPath, Stdin: true, StdinOnce: true})
	a := attach(t, c, "cat")
	if a.a.State.StdinPath == "" {
		t.Fatal("no stdin path")
	}
	w, err := os.OpenFile(a.a.State.StdinPath, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("hello\n"))
	testsupport.PollUntil(t, "stdin echoed", 10*time.Second, func() bool { return a.out.String() == "hello\n" })
	// StdinOnce as berthd does it: the attacher detaches, stdin is closed,
	// cat reads EOF and exits.
	w.Close()
	a.a.Close()
	if err := c.CloseStdin(testCtx(t), "cat"); err != nil {
		t.Fatal(err)
	}
	if e := wait(t, c, "cat"); e.ExitCode != 0 {
		t.Fatalf("exit %+v", e)
	}
	if got := messages(readLog(t, logPath), "stdout"); len(got) != 1 || got[0] != "hello" {
		t.Fatalf("log %q", got)
	}
}

// TestAttachSlowReaderDropped: an attacher that does not read must not slow
// the container or its log; it is disconnected.
func TestAttachSlowReaderDropped(t *testing.T) {
	c, dir := startSupervisor(t)
	logPath := dir + "/slow.log"
	_, err := c.Create(testCtx(t), "burst", v1.CreateRequest{Bundle: bundle(t, "burst", "seq 1 2000000"), LogPath: logPath})
	if err != nil {
		t.Fatal(err)
	}
	slow, err := c.Attach(testCtx(t), "burst") // never read
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testsupport.Slow(30*time.Second))
	defer cancel()
	if _, err := c.Start(ctx, "burst"); err != nil {
		t.Fatal(err)
	}
	if e := wait(t, c, "burst"); e.ExitCode != 0 {
		t.Fatalf("exit %+v", e)
	}
	if got := messages(readLog(t, logPath), "stdout"); len(got) != 2000000 || got[len(got)-1] != "2000000" {
		t.Fatalf("log has %d lines", len(got))
	}
	if err := slow.Copy(nil, nil); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("slow attacher: %v, want dropped (ErrUnavailable)", err)
	}
}

func fmtSscanf(l string, n *int) (int, error) { return fmt.Sscanf(l, "line%d", n) }

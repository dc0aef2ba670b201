package streaming

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"

	"github.com/berth-cri/berth/internal/testsupport"
)

// TestAttach: an attach session sees live output, stdin reaches the
// container, and with stdin_once the container gets EOF once the first
// attacher's stdin ends.
func TestAttach(t *testing.T) {
	sup := startSupervisor(t)
	bundle := t.TempDir()
	spec := testSpec("att", `echo ready; cat; echo bye`)
	data, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	logPath := filepath.Join(t.TempDir(), "att.log")
	if _, err := sup.Create(ctx, "att", supv1.CreateRequest{Bundle: bundle, LogPath: logPath, Stdin: true, StdinOnce: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := sup.Start(ctx, "att"); err != nil {
		t.Fatal(err)
	}
	l := newLookup()
	l.attachs["att"] = AttachTarget{ID: "att", Stdin: true, StdinOnce: true}
	s := newService(t, l, sup)
	resp, err := s.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: "att", Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	inR, inW := io.Pipe()
	var live testsupport.SyncBuffer
	done := make(chan *session, 1)
	go func() { done <- runSession(t, resp.Url, inR, true, false, nil, &live) }()
	// Output written after the attach began comes through the session; keep
	// sending until the echo shows the session is connected end to end.
	testsupport.PollUntil(t, "stdin echoed through the attach", 10*time.Second, func() bool {
		inW.Write([]byte("ping\n"))
		return strings.Contains(live.String(), "ping\n")
	})
	// Ending stdin detaches stdin: stdin_once closes the container's stdin,
	// cat exits, and the session ends with the output.
	inW.Close()
	sess := <-done
	if !strings.HasSuffix(sess.stdout.String(), "bye\n") || !strings.Contains(sess.status, "Success") {
		t.Fatalf("attach output %q status %s", sess.stdout.String(), sess.status)
	}
	st, err := sup.Wait(ctx, "att")
	if err != nil || st.Exit.ExitCode != 0 {
		t.Fatalf("container exit %+v %v", st, err)
	}
	log, _ := os.ReadFile(logPath)
	if !strings.Contains(string(log), "stdout F ready") || !strings.Contains(string(log), "stdout F ping") || !strings.Contains(string(log), "stdout F bye") {
		t.Fatalf("log misses output:\n%s", log)
	}
	if _, err := s.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: "nope", Stdout: true}); err == nil {
		t.Fatal("attach to an unknown container succeeded")
	}
}

// TestAttachTTY: an attach to a tty container gets the terminal's output as
// stdout, applies the session's resize events (stty size), and sends stdin to
// the shell reading the terminal.
func TestAttachTTY(t *testing.T) {
	sup := startSupervisor(t)
	bundle := t.TempDir()
	spec := testSpec("tty", "exec sh")
	spec.Process.Terminal = true
	data, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	logPath := filepath.Join(t.TempDir(), "tty.log")
	if _, err := sup.Create(ctx, "tty", supv1.CreateRequest{Bundle: bundle, LogPath: logPath, Terminal: true, Stdin: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := sup.Start(ctx, "tty"); err != nil {
		t.Fatal(err)
	}
	l := newLookup()
	l.attachs["tty"] = AttachTarget{ID: "tty", Stdin: true, TTY: true}
	s := newService(t, l, sup)
	resp, err := s.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: "tty", Stdin: true, Stdout: true, Tty: true})
	if err != nil {
		t.Fatal(err)
	}
	inR, inW := io.Pipe()
	var live testsupport.SyncBuffer
	done := make(chan *session, 1)
	sizes := []remotecommand.TerminalSize{{Width: 100, Height: 30}}
	go func() { done <- runSession(t, resp.Url, inR, false, true, sizes, &live) }()
	// Resize and stdin travel on different streams: ask until the shell
	// reports the new size.
	testsupport.PollUntil(t, "stty size after the resize", 10*time.Second, func() bool {
		inW.Write([]byte("stty size\n"))
		return strings.Contains(live.String(), "30 100")
	})
	inW.Write([]byte("tty; exit 3\n"))
	sess := <-done
	if !strings.Contains(sess.stdout.String(), "/dev/pts/") || !strings.Contains(sess.status, "Success") {
		t.Fatalf("attach output %q status %s", sess.stdout.String(), sess.status)
	}
	inW.Close()
	st, err := sup.Wait(ctx, "tty")
	if err != nil || st.Exit.ExitCode != 3 {
		t.Fatalf("container exit %+v %v", st, err)
	}
	log, _ := os.ReadFile(logPath)
	if !strings.Contains(string(log), "stdout F 30 100\n") || strings.Contains(string(log), " stderr ") {
		t.Fatalf("log of the tty session:\n%s", log)
	}
}

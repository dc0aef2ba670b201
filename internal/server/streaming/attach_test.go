package streaming

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	supv1 "github.com/berth-cri/berth/api/supervisor/v1"
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
	var live lockedWriter
	done := make(chan *session, 1)
	go func() { done <- runSession(t, resp.Url, inR, true, false, nil, &live) }()
	// Output written after the attach began comes through the session; keep
	// sending until the echo shows the session is connected end to end.
	pollUntil(t, "stdin echoed through the attach", func() bool {
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

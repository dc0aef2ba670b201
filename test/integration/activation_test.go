package integration

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	remote "k8s.io/cri-client/pkg"

	"github.com/berth-cri/berth/internal/testsupport"
	"github.com/berth-cri/berth/test/internal/harness"
)

// TestSocketActivation hands berthd a listening socket as systemd does
// (fd 3, LISTEN_FDS=1, LISTEN_PID = its pid): it serves that socket
// instead of creating its own.
func TestSocketActivation(t *testing.T) {
	d := harness.New(t, "")
	sock := filepath.Join(d.Dir, "activated.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ul := l.(*net.UnixListener)
	f, err := ul.File()
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false) // the path stays for berthd, as systemd leaves it
	ul.Close()
	// The shell's pid is berthd's after exec, so LISTEN_PID can be set.
	cmd := exec.Command("sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" --config "$1"`, harness.Binary(t), d.Config)
	cmd.ExtraFiles = []*os.File{f}
	logs := &harness.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	ok := testsupport.Poll(20*time.Second, 50*time.Millisecond, func() bool {
		rt, err := remote.NewRemoteRuntimeService(context.Background(), "unix://"+sock, 2*time.Second, nil, false)
		if err != nil {
			return false
		}
		v, err := rt.Version(context.Background(), "v1")
		return err == nil && v.RuntimeName == "berth"
	})
	if !ok {
		t.Fatalf("berthd did not serve the activated socket\n%s", logs)
	}
	if _, err := os.Stat(d.Socket); err == nil {
		t.Errorf("berthd also created %s under socket activation", d.Socket)
	}
	if !logs.Contains("socket_activated=true") {
		t.Errorf("log does not say the socket was activated:\n%s", logs)
	}
	// Regression: socket activation kept every state dir on disk; only a
	// socket inside it must (this one is beside it).
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Join(d.Dir, "run"), &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Errorf("state dir not on a tmpfs under socket activation (%v)\n%s", err, logs)
	}
}

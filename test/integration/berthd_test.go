// Package integration starts real berthd binaries and drives them through
// kubelet's own CRI client (k8s.io/cri-client), as kubelet would.
package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	internalapi "k8s.io/cri-api/pkg/apis"
	remote "k8s.io/cri-client/pkg"
)

var (
	buildOnce sync.Once
	berthdBin string
	buildErr  error
)

// binary returns the berthd under test: $BERTHD_BIN (the Makefile passes
// bin/berthd), else one built once for this test run.
func binary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("BERTHD_BIN"); b != "" {
		return b
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "berthd-bin-")
		if err != nil {
			buildErr = err
			return
		}
		berthdBin = filepath.Join(dir, "berthd")
		cmd := exec.Command("go", "build", "-tags", "seccomp", "-o", berthdBin, "github.com/berth-cri/berth/cmd/berthd")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build berthd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return berthdBin
}

// daemon is one running berthd with private directories.
type daemon struct {
	t      *testing.T
	dir    string
	socket string
	config string
	cmd    *exec.Cmd
	logs   *syncBuffer
	exited chan struct{}
	// bin overrides the berthd binary (its berth-supervisor is beside it).
	bin string
	// env is added to berthd's environment at the next start (BERTH_FAULT).
	env []string
}

// newDaemon writes a config using private paths under a temp dir, plus
// extra TOML appended to it, without starting berthd.
func newDaemon(t *testing.T, extra string) *daemon {
	t.Helper()
	dir := t.TempDir()
	d := &daemon{t: t, dir: dir, socket: filepath.Join(dir, "run", "berth.sock"), config: filepath.Join(dir, "berth.toml")}
	// extra comes between the top-level keys and the tables, so it may set
	// either; it must not repeat [cni], [registry] or [nri]. NRI's socket
	// is the daemon's own: tests never share it with each other or a host
	// runtime.
	cfg := fmt.Sprintf(`listen = %q
root_dir = %q
state_dir = %q
log_level = "debug"
%s
[cni]
conf_dir = %q
[registry]
config_path = %q
[nri]
socket_path = %q
`, d.socket, filepath.Join(dir, "root"), filepath.Join(dir, "run"), extra, filepath.Join(dir, "net.d"), filepath.Join(dir, "certs.d"),
		filepath.Join(dir, "nri.sock"))
	if err := os.WriteFile(d.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// Registered before the temp dir's removal runs: the supervisor this
	// daemon started outlives berthd by design, and the netns dir is a
	// mount point.
	t.Cleanup(d.cleanupHost)
	return d
}

// removePods stops and removes every pod berthd still has, through the
// CRI, so their networks get CNI DEL (a killed pause would leave its NAT
// rules behind). Best effort: a test may have stopped berthd already.
func (d *daemon) removePods() {
	select {
	case <-d.exited:
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt, err := remote.NewRemoteRuntimeService(ctx, d.endpoint(), 5*time.Second, nil, false)
	if err != nil {
		return
	}
	pods, err := rt.ListPodSandbox(ctx, nil)
	if err != nil {
		return
	}
	for _, p := range pods {
		rt.StopPodSandbox(ctx, p.Id)
		rt.RemovePodSandbox(ctx, p.Id)
	}
}

// cleanupHost stops the daemon's supervisor (and so its containers' parent)
// and unmounts what berthd mounted under the test's directories.
func (d *daemon) cleanupHost() {
	d.stop()
	stateDir := filepath.Join(d.dir, "run")
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		args := strings.Split(string(b), "\x00")
		if len(args) > 2 && strings.HasSuffix(args[0], "berth-supervisor") && strings.Contains(string(b), stateDir) {
			var pid int
			fmt.Sscanf(filepath.Base(filepath.Dir(p)), "%d", &pid)
			// Its children first: they would outlive it, reparented to init,
			// when a failed test left pods running.
			for _, child := range d.supervisedPIDs() {
				syscall.Kill(child, syscall.SIGKILL)
			}
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	// A pause or container re-adopted by a restarted supervisor is not its
	// child: find whatever still runs in a root under the test's directory.
	roots, _ := filepath.Glob("/proc/[0-9]*/root")
	for _, r := range roots {
		if target, err := os.Readlink(r); err == nil && strings.HasPrefix(target, d.dir+"/") {
			var pid int
			fmt.Sscanf(filepath.Base(filepath.Dir(r)), "%d", &pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	var mounts []string
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], d.dir) {
			mounts = append(mounts, f[4])
		}
	}
	// Deepest first.
	sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
	for _, m := range mounts {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

// start runs berthd and waits until its socket answers Version.
func (d *daemon) start() {
	d.t.Helper()
	d.logs = &syncBuffer{}
	bin := d.bin
	if bin == "" {
		bin = binary(d.t)
	}
	d.cmd = exec.Command(bin, "--config", d.config)
	if d.env != nil {
		d.cmd.Env = append(os.Environ(), d.env...)
	}
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.exited = make(chan struct{})
	go func() { d.cmd.Wait(); close(d.exited) }()
	d.t.Cleanup(func() {
		d.removePods()
		d.stop()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-d.exited:
			d.t.Fatalf("berthd exited at start: %v\n%s", d.cmd.ProcessState, d.logs)
		default:
		}
		if c, err := net.Dial("unix", d.socket); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("berthd did not listen on %s\n%s", d.socket, d.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	select {
	case <-d.exited:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		d.t.Errorf("berthd ignored SIGTERM for 15s\n%s", d.logs)
	}
}

func (d *daemon) endpoint() string { return "unix://" + d.socket }

// runtimeClient is kubelet's CRI runtime client, which validates replies.
func (d *daemon) runtimeClient() internalapi.RuntimeService {
	d.t.Helper()
	c, err := remote.NewRemoteRuntimeService(context.Background(), d.endpoint(), 10*time.Second, nil, false)
	if err != nil {
		d.t.Fatal(err)
	}
	return c
}

func (d *daemon) imageClient() internalapi.ImageManagerService {
	d.t.Helper()
	c, err := remote.NewRemoteImageService(context.Background(), d.endpoint(), 10*time.Second, nil, false)
	if err != nil {
		d.t.Fatal(err)
	}
	return c
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Contains(sub string) bool { return strings.Contains(s.String(), sub) }

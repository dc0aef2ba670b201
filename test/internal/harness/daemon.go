// Package harness starts real berthd binaries with private directories,
// configs and networks for test/integration and test/stress, and cleans up
// after them: pods through the CRI, then whatever runs or is mounted under
// the test's directories.
package harness

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
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"

	"github.com/berth-cri/berth/internal/testsupport"
)

var (
	buildOnce sync.Once
	berthdBin string
	buildErr  error
)

// Binary returns the berthd under test: $BERTHD_BIN (the Makefile passes
// bin/test/berthd, built with FaultTag), else berthd and berth-supervisor
// built once for this test run with FaultTag, side by side as berthd looks
// for its supervisor.
func Binary(t testing.TB) string {
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
		cmd := exec.Command("go", "build", "-tags", "seccomp,"+FaultTag, "-o", dir+"/",
			"github.com/berth-cri/berth/cmd/berthd", "github.com/berth-cri/berth/cmd/berth-supervisor")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build berthd: %w\n%s", err, out)
		}
		berthdBin = filepath.Join(dir, "berthd")
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return berthdBin
}

// Daemon is one berthd with private directories under Dir.
type Daemon struct {
	t      testing.TB
	Dir    string
	Socket string
	Config string
	Cmd    *exec.Cmd
	Logs   *SyncBuffer
	Exited chan struct{}

	// Bin overrides the berthd binary (its berth-supervisor is beside it).
	Bin string
	// Env is added to berthd's environment at the next start (BERTH_FAULT).
	Env []string
	// RuntimeTimeout and ImageTimeout are the CRI clients' per-call
	// timeouts: 10s unless set (a busy node needs more).
	RuntimeTimeout, ImageTimeout time.Duration
	// RaceCheck fails the test when berthd or its supervisor report a data
	// race (a BERTHD_BIN built with -race).
	RaceCheck bool
}

// New writes a config using private paths under a temp dir, plus extra
// TOML, without starting berthd.
func New(t testing.TB, extra string) *Daemon {
	t.Helper()
	dir := t.TempDir()
	d := &Daemon{t: t, Dir: dir, Socket: filepath.Join(dir, "run", "berth.sock"), Config: filepath.Join(dir, "berth.toml"),
		RuntimeTimeout: testsupport.Slow(10 * time.Second), ImageTimeout: testsupport.Slow(10 * time.Second)}
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
`, d.Socket, filepath.Join(dir, "root"), filepath.Join(dir, "run"), extra, filepath.Join(dir, "net.d"), filepath.Join(dir, "certs.d"),
		filepath.Join(dir, "nri.sock"))
	if err := os.WriteFile(d.Config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// Registered before the temp dir's removal runs: the supervisor this
	// daemon started outlives berthd by design, and the netns dir is a
	// mount point.
	t.Cleanup(d.cleanupHost)
	return d
}

// Binary returns the berthd binary d runs.
func (d *Daemon) Binary() string {
	if d.Bin != "" {
		return d.Bin
	}
	return Binary(d.t)
}

// Start runs berthd and waits until its socket answers.
func (d *Daemon) Start() {
	d.t.Helper()
	logs := &SyncBuffer{}
	d.Logs = logs
	bin := d.Binary()
	d.Cmd = exec.Command(bin, "--config", d.Config)
	if d.Env != nil {
		d.Cmd.Env = append(os.Environ(), d.Env...)
	}
	d.Cmd.Stdout, d.Cmd.Stderr = logs, logs
	if err := d.Cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.Exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { cmd.Wait(); close(exited) }(d.Cmd, d.Exited)
	d.t.Cleanup(func() {
		d.RemovePods()
		d.Stop()
		if d.RaceCheck {
			d.checkRaces(logs)
		}
		if d.t.Failed() {
			// What a failure in the emulated guest leaves to go on.
			sup, _ := os.ReadFile(filepath.Join(d.Dir, "run", "supervisor", "supervisor.log"))
			d.t.Logf("this berthd's log, last %d lines:\n%s\nthe supervisor's log, last %d lines:\n%s",
				failureLogLines, lastLines(logs.String(), failureLogLines), failureLogLines, lastLines(string(sup), failureLogLines))
		}
	})
	deadline := time.Now().Add(testsupport.Slow(20 * time.Second))
	for {
		if d.exited() {
			d.t.Fatalf("berthd exited at start: %v\n%s", d.Cmd.ProcessState, logs)
		}
		if c, err := net.Dial("unix", d.Socket); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("berthd did not listen on %s\n%s", d.Socket, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// failureLogLines is how much of berthd's and the supervisor's logs a
// failed test shows.
const failureLogLines = 60

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// checkRaces reports the race detector's findings in logs (this start's)
// and the supervisor's log.
func (d *Daemon) checkRaces(logs *SyncBuffer) {
	if logs.Contains("WARNING: DATA RACE") {
		d.t.Errorf("berthd reported a data race:\n%s", logs)
	}
	if b, _ := os.ReadFile(filepath.Join(d.Dir, "run", "supervisor", "supervisor.log")); bytes.Contains(b, []byte("WARNING: DATA RACE")) {
		d.t.Errorf("berth-supervisor reported a data race:\n%s", b)
	}
}

// Stop sends SIGTERM and waits for a clean exit.
func (d *Daemon) Stop() {
	if d.Cmd == nil || d.Cmd.Process == nil || d.exited() {
		return
	}
	d.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.Exited:
	case <-time.After(testsupport.Slow(15 * time.Second)):
		d.Cmd.Process.Kill()
		<-d.Exited
		d.t.Errorf("berthd ignored SIGTERM for 15s\n%s", d.Logs)
	}
}

func (d *Daemon) exited() bool {
	select {
	case <-d.Exited:
		return true
	default:
		return false
	}
}

// WaitReady waits until recovery is done and every RPC is served.
func (d *Daemon) WaitReady() {
	d.t.Helper()
	rt := d.RuntimeClient()
	WaitFor(d.t, "RuntimeReady", 20*time.Second, func() bool {
		st, err := rt.Status(context.Background(), false)
		if err != nil {
			return false
		}
		for _, c := range st.Status.GetConditions() {
			if c.Type == runtimeapi.RuntimeReady {
				return c.Status
			}
		}
		return false
	})
}

// Endpoint is the CRI endpoint, as kubelet and crictl take it.
func (d *Daemon) Endpoint() string { return "unix://" + d.Socket }

// RuntimeClient is kubelet's CRI runtime client, which validates replies.
func (d *Daemon) RuntimeClient() internalapi.RuntimeService {
	d.t.Helper()
	c, err := remote.NewRemoteRuntimeService(context.Background(), d.Endpoint(), d.RuntimeTimeout, nil, false)
	if err != nil {
		d.t.Fatal(err)
	}
	return c
}

// ImageClient is kubelet's CRI image client.
func (d *Daemon) ImageClient() internalapi.ImageManagerService {
	d.t.Helper()
	c, err := remote.NewRemoteImageService(context.Background(), d.Endpoint(), d.ImageTimeout, nil, false)
	if err != nil {
		d.t.Fatal(err)
	}
	return c
}

// RemovePods stops and removes every pod berthd still has, through the
// CRI, so their networks get CNI DEL (a killed pause would leave its NAT
// rules behind). Best effort: a test may have stopped berthd already.
func (d *Daemon) RemovePods() {
	if d.exited() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), testsupport.Slow(60*time.Second))
	defer cancel()
	rt, err := remote.NewRemoteRuntimeService(ctx, d.Endpoint(), testsupport.Slow(30*time.Second), nil, false)
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

// cleanupHost kills the daemon's supervisors and their children, and
// whatever else runs in a root under Dir, and unmounts what berthd
// mounted there.
func (d *Daemon) cleanupHost() {
	d.Stop()
	// The keeper first, and before its children: it would start the
	// supervisor again.
	var orphans []int // containers a killed supervisor left to the keeper
	if k := d.KeeperPID(); k != 0 {
		orphans = childrenOf(k)
		syscall.Kill(k, syscall.SIGKILL)
	}
	for _, sup := range d.supervisors() {
		// Its children first: they would outlive it, reparented to init,
		// when a failed test left pods running.
		for _, child := range childrenOf(sup) {
			syscall.Kill(child, syscall.SIGKILL)
		}
		syscall.Kill(sup, syscall.SIGKILL)
	}
	for _, pid := range orphans {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	// A pause or container re-adopted by a restarted supervisor is not its
	// child: find whatever still runs in a root under the test's directory.
	roots, _ := filepath.Glob("/proc/[0-9]*/root")
	for _, r := range roots {
		if target, err := os.Readlink(r); err == nil && strings.HasPrefix(target, d.Dir+"/") {
			syscall.Kill(pidOf(r), syscall.SIGKILL)
		}
	}
	mounts := d.mounts()
	// Deepest first.
	sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
	for _, m := range mounts {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

// mounts are the mount points at or below Dir.
func (d *Daemon) mounts() []string {
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == d.Dir || strings.HasPrefix(f[4], d.Dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// WaitFor polls cond until it holds, failing the test after timeout.
var WaitFor = testsupport.PollUntil

// FreePort is a TCP port on loopback nothing listens on right now
// (metrics_address takes no port 0).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// SyncBuffer collects berthd's stdout and stderr while a test reads them.
type SyncBuffer = testsupport.SyncBuffer

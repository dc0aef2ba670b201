// Package stress runs berthd under churn and load: many pod lifecycles in
// flight at once, concurrent pulls, execs and lists, then checks that
// nothing leaked. It starts real berthd binaries like test/integration,
// whose few helpers it needs are copied here (test packages do not import
// each other). The tests run only when BERTH_STRESS is set (make
// test-stress, test-stress-short).
package stress

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remotecri "k8s.io/cri-client/pkg"
)

const (
	pauseRepo   = "stress/pause:1"
	busyboxRepo = "stress/busybox:1"
)

func needStress(t *testing.T) {
	if os.Getenv("BERTH_STRESS") == "" {
		t.Skip("stress tests run with BERTH_STRESS=1 (make test-stress-short)")
	}
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// binary is $BERTHD_BIN, else berthd and berth-supervisor built once.
func binary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("BERTHD_BIN"); b != "" {
		return b
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "berth-stress-bin-")
		if err != nil {
			buildErr = err
			return
		}
		cmd := exec.Command("go", "build", "-tags", "seccomp", "-o", dir+"/",
			"github.com/berth-cri/berth/cmd/berthd", "github.com/berth-cri/berth/cmd/berth-supervisor")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build berthd: %v\n%s", err, out)
		}
		builtBin = filepath.Join(dir, "berthd")
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// daemon is one running berthd with private directories, a registry
// holding the pause and busybox images, and a bridge network of its own.
type daemon struct {
	t                               *testing.T
	dir, socket, config             string
	cmd                             *exec.Cmd
	logs                            *syncBuffer
	exited                          chan struct{}
	metrics                         string // host:port of /metrics
	reg                             *testRegistry
	bridge, subnet, prefix, ipamDir string
	rt                              internalapi.RuntimeService
	img                             internalapi.ImageManagerService
}

func newDaemon(t *testing.T) *daemon {
	t.Helper()
	dir := t.TempDir()
	d := &daemon{t: t, dir: dir, socket: filepath.Join(dir, "run", "berth.sock"), config: filepath.Join(dir, "berth.toml")}
	d.reg = newTestRegistry(t)
	d.reg.pushPodImages(t)
	n := os.Getpid()%200 + 10
	d.bridge, d.subnet, d.prefix = fmt.Sprintf("berthst%d", n), fmt.Sprintf("10.88.%d.0/24", n), fmt.Sprintf("10.88.%d.", n)
	d.ipamDir = filepath.Join(dir, "ipam")
	d.metrics = freePort(t)
	cfg := fmt.Sprintf(`listen = %q
root_dir = %q
state_dir = %q
sandbox_image = %q
metrics_address = %q
log_level = "debug"
[cni]
conf_dir = %q
[nri]
socket_path = %q
`, d.socket, filepath.Join(dir, "root"), filepath.Join(dir, "run"), d.reg.host+"/"+pauseRepo, d.metrics, filepath.Join(dir, "net.d"),
		filepath.Join(dir, "nri.sock"))
	if err := os.WriteFile(d.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// A /22-sized pool is not needed: a /24 holds the 20 pods in flight.
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"%s","plugins":[
 {"type":"bridge","bridge":"%s","isGateway":true,"ipMasq":true,"hairpinMode":true,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"%s"}]],"routes":[{"dst":"0.0.0.0/0"}],"dataDir":"%s"}},
 {"type":"portmap","capabilities":{"portMappings":true}}]}`, d.bridge, d.bridge, d.subnet, d.ipamDir)
	os.MkdirAll(filepath.Join(dir, "net.d"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "net.d", "10-stress.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", d.bridge).Run() })
	t.Cleanup(d.cleanupHost)
	d.start()
	return d
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs berthd and waits until it is ready.
func (d *daemon) start() {
	d.t.Helper()
	d.logs = &syncBuffer{}
	d.cmd = exec.Command(binary(d.t), "--config", d.config)
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.exited = make(chan struct{})
	go func() { d.cmd.Wait(); close(d.exited) }()
	logs := d.logs
	d.t.Cleanup(func() {
		d.removePods()
		d.stop()
		// A berthd built with -race (BERTHD_BIN) reports here.
		if strings.Contains(logs.String(), "WARNING: DATA RACE") {
			d.t.Errorf("berthd reported a data race:\n%s", logs)
		}
		if b, _ := os.ReadFile(filepath.Join(d.dir, "run", "supervisor", "supervisor.log")); bytes.Contains(b, []byte("WARNING: DATA RACE")) {
			d.t.Errorf("berth-supervisor reported a data race:\n%s", b)
		}
	})
	waitFor(d.t, "berthd socket", 20*time.Second, func() bool {
		select {
		case <-d.exited:
			d.t.Fatalf("berthd exited at start: %v\n%s", d.cmd.ProcessState, d.logs)
		default:
		}
		c, err := net.Dial("unix", d.socket)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	ep := "unix://" + d.socket
	var err error
	if d.rt, err = remotecri.NewRemoteRuntimeService(context.Background(), ep, 30*time.Second, nil, false); err != nil {
		d.t.Fatal(err)
	}
	if d.img, err = remotecri.NewRemoteImageService(context.Background(), ep, 2*time.Minute, nil, false); err != nil {
		d.t.Fatal(err)
	}
	waitFor(d.t, "RuntimeReady", 20*time.Second, func() bool {
		st, err := d.rt.Status(context.Background(), false)
		if err != nil {
			return false
		}
		for _, c := range st.Status.Conditions {
			if c.Type == runtimeapi.RuntimeReady {
				return c.Status
			}
		}
		return false
	})
}

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
		d.t.Errorf("berthd ignored SIGTERM for 15s")
	}
}

// cleanupHost kills the daemon's supervisor and its children and unmounts
// what berthd mounted under the test's directory.
// removePods stops and removes every pod berthd still has, through the
// CRI, so their networks get CNI DEL (a killed pause leaves NAT rules).
func (d *daemon) removePods() {
	if d.rt == nil {
		return
	}
	select {
	case <-d.exited:
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pods, err := d.rt.ListPodSandbox(ctx, nil)
	if err != nil {
		return
	}
	for _, p := range pods {
		d.rt.StopPodSandbox(ctx, p.Id)
		d.rt.RemovePodSandbox(ctx, p.Id)
	}
}

func (d *daemon) cleanupHost() {
	d.stop()
	if sup := d.supervisorPID(); sup != 0 {
		for _, c := range childrenOf(sup) {
			syscall.Kill(c, syscall.SIGKILL)
		}
		syscall.Kill(sup, syscall.SIGKILL)
	}
	// Processes re-adopted by a restarted supervisor are not its children.
	roots, _ := filepath.Glob("/proc/[0-9]*/root")
	for _, r := range roots {
		if target, err := os.Readlink(r); err == nil && strings.HasPrefix(target, d.dir+"/") {
			var pid int
			fmt.Sscanf(filepath.Base(filepath.Dir(r)), "%d", &pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	mounts := d.mounts()
	sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
	for _, m := range mounts {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

func (d *daemon) mounts() []string {
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], d.dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

func (d *daemon) supervisorPID() int {
	stateDir := filepath.Join(d.dir, "run")
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		args := strings.Split(string(b), "\x00")
		if len(args) > 2 && strings.HasSuffix(args[0], "berth-supervisor") && slices.Contains(args, stateDir) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			return pid
		}
	}
	return 0
}

// childrenOf lists the live (not zombie) children of pid.
func childrenOf(pid int) []int {
	var out []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		var state string
		var ppid int
		if _, err := fmt.Sscanf(string(b[i+1:]), " %s %d", &state, &ppid); err == nil && ppid == pid && state != "Z" {
			c, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			out = append(out, c)
		}
	}
	return out
}

// procStatus reads a numeric field (Threads, VmRSS in kB) of
// /proc/pid/status.
func procStatus(pid int, field string) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return -1
}

func countFDs(pid int) int {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(fds)
}

// goroutines is go_goroutines from berthd's /metrics, or -1.
func (d *daemon) goroutines() int {
	resp, err := http.Get("http://" + d.metrics + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	return -1
}

func podConfig(name string, attempt uint32, logDir string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "stress", Uid: "uid-" + name, Attempt: attempt},
		Hostname:     name,
		LogDirectory: logDir,
		Labels:       map[string]string{"app": name},
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
}

func (d *daemon) containerConfig(name string, cmd ...string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: d.reg.host + "/" + busyboxRepo},
		Command:  cmd,
		LogPath:  name + ".log",
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
}

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

// testRegistry is an in-process OCI registry on loopback.
type testRegistry struct{ host string }

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return &testRegistry{host: strings.TrimPrefix(srv.URL, "http://")}
}

type tarEntry struct {
	name, linkname string
	mode           int64
	body           []byte
	dir            bool
}

func layerOf(t *testing.T, entries []tarEntry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.body)), Typeflag: tar.TypeReg}
		switch {
		case e.dir:
			h.Typeflag, h.Size = tar.TypeDir, 0
		case e.linkname != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeLink, e.linkname, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.body)
	}
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// pushImage pushes an image of layers (lowest first) as repo.
func (r *testRegistry) pushImage(t *testing.T, repo string, layers []v1.Layer, cfg v1.Config) {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config = "linux", "amd64", cfg
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(r.host+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
}

var (
	pauseOnce sync.Once
	pauseBin  []byte
	pauseErr  error
)

// pauseBinary builds test/integration/testdata/pause (its source, not its
// package: nothing is imported across test packages).
func pauseBinary(t *testing.T) []byte {
	t.Helper()
	pauseOnce.Do(func() {
		out := filepath.Join(os.TempDir(), fmt.Sprintf("berth-stress-pause-%d", os.Getpid()))
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "../integration/testdata/pause")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			pauseErr = fmt.Errorf("build pause: %v\n%s", err, b)
			return
		}
		pauseBin, pauseErr = os.ReadFile(out)
		os.Remove(out)
	})
	if pauseErr != nil {
		t.Fatal(pauseErr)
	}
	return pauseBin
}

func busyboxLayer(t *testing.T) v1.Layer {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox") // Debian's busybox-static (hack/install-deps.sh)
	if err != nil {
		t.Fatalf("busybox-static is needed: %v", err)
	}
	entries := []tarEntry{
		{name: "bin/", dir: true, mode: 0o755}, {name: "tmp/", dir: true, mode: 0o1777},
		{name: "bin/busybox", mode: 0o755, body: bb},
	}
	for _, applet := range []string{"sh", "sleep", "echo", "cat", "true"} {
		entries = append(entries, tarEntry{name: "bin/" + applet, linkname: "bin/busybox"})
	}
	return layerOf(t, entries)
}

func (r *testRegistry) pushPodImages(t *testing.T) {
	t.Helper()
	r.pushImage(t, pauseRepo, []v1.Layer{layerOf(t, []tarEntry{{name: "pause", mode: 0o755, body: pauseBinary(t)}})},
		v1.Config{Entrypoint: []string{"/pause"}})
	r.pushImage(t, busyboxRepo, []v1.Layer{busyboxLayer(t)}, v1.Config{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}})
}

func readDirNames(dir string) ([]string, error) {
	es, err := os.ReadDir(dir)
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out, err
}

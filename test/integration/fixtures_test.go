package integration

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Images the pod tests use, pushed to each test's own registry.
const (
	pauseRepo   = "test/pause:1"
	busyboxRepo = "test/busybox:1"
)

var (
	pauseOnce sync.Once
	pauseBin  []byte
	pauseErr  error
)

// pauseBinary builds testdata/pause, static, once per test run.
func pauseBinary(t *testing.T) []byte {
	t.Helper()
	pauseOnce.Do(func() {
		out := filepath.Join(os.TempDir(), fmt.Sprintf("berth-test-pause-%d", os.Getpid()))
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./testdata/pause")
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

// tarEntry is one file of a test layer.
type tarEntry struct {
	name     string
	mode     int64
	body     []byte
	linkname string // hard link target when set
	dir      bool
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
		if h.Size > 0 {
			tw.Write(e.body)
		}
	}
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (r *testRegistry) pushImage(t *testing.T, repo string, layer v1.Layer, cfg v1.Config) {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layer)
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

// pushPodImages pushes the pause and busybox images the pod tests use.
func (r *testRegistry) pushPodImages(t *testing.T) {
	t.Helper()
	r.pushImage(t, pauseRepo, layerOf(t, []tarEntry{{name: "pause", mode: 0o755, body: pauseBinary(t)}}),
		v1.Config{Entrypoint: []string{"/pause"}})

	bb, err := os.ReadFile("/bin/busybox") // Debian's busybox-static (hack/install-deps.sh)
	if err != nil {
		t.Fatalf("busybox-static is needed: %v", err)
	}
	entries := []tarEntry{
		{name: "bin/", dir: true, mode: 0o755}, {name: "etc/", dir: true, mode: 0o755},
		{name: "tmp/", dir: true, mode: 0o1777}, {name: "root/", dir: true, mode: 0o700},
		{name: "bin/busybox", mode: 0o755, body: bb},
		{name: "etc/passwd", mode: 0o644, body: []byte("root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/false\nnobody:x:65534:65534:nobody:/home:/bin/false\n")},
		{name: "etc/group", mode: 0o644, body: []byte("root:x:0:\nwww-data:x:33:\nextra:x:3000:www-data\nnogroup:x:65534:\n")},
	}
	for _, applet := range []string{"sh", "sleep", "echo", "cat", "id", "ls", "env", "true", "false", "wget", "nc", "httpd", "ps", "grep", "head", "seq", "touch", "yes", "dd", "hostname", "ip", "mount"} {
		entries = append(entries, tarEntry{name: "bin/" + applet, linkname: "bin/busybox"})
	}
	r.pushImage(t, busyboxRepo, layerOf(t, entries), v1.Config{
		Cmd: []string{"sh"}, Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	})
}

var netSeq atomic.Int32

// newPodDaemon is a daemon that can run pods: a registry holding the
// pause and busybox images (pause is its sandbox image), and a bridge CNI
// network of its own (bridge name, subnet, IPAM dir), so tests never share
// network state with each other or with a berthd running on the host.
func newPodDaemon(t *testing.T, extra string) (*daemon, *testRegistry, podNet) {
	t.Helper()
	reg := newTestRegistry(t)
	reg.pushPodImages(t)
	n := netSeq.Add(1) + int32(os.Getpid()%100)*3
	pn := podNet{bridge: fmt.Sprintf("berthit%d", n), subnet: fmt.Sprintf("10.87.%d.0/24", n%250), prefix: fmt.Sprintf("10.87.%d.", n%250)}
	d := newDaemon(t, fmt.Sprintf("sandbox_image = %q\n", reg.host+"/"+pauseRepo)+extra)
	pn.dataDir = filepath.Join(d.dir, "ipam")
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"%s","plugins":[
 {"type":"bridge","bridge":"%s","isGateway":true,"ipMasq":true,"hairpinMode":true,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"%s"}]],"routes":[{"dst":"0.0.0.0/0"}],"dataDir":"%s"}},
 {"type":"portmap","capabilities":{"portMappings":true}}]}`, pn.bridge, pn.bridge, pn.subnet, pn.dataDir)
	os.MkdirAll(filepath.Join(d.dir, "net.d"), 0o755)
	if err := os.WriteFile(filepath.Join(d.dir, "net.d", "10-test.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", pn.bridge).Run() })
	return d, reg, pn
}

// podNet is a pod daemon's private CNI network.
type podNet struct {
	bridge, subnet, prefix, dataDir string
}

// resourceCounts are the host resources pods use, for leak checks.
type resourceCounts map[string]int

func (d *daemon) countResources(t *testing.T, pn podNet) resourceCounts {
	t.Helper()
	c := resourceCounts{}
	// Only mounts under the daemon's directories: other berthds (other
	// tests, a developer's own) mount and unmount elsewhere meanwhile.
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], d.dir+"/") {
			c["mounts"]++
		}
	}
	netns, _ := os.ReadDir(filepath.Join(d.dir, "run", "netns"))
	c["netns pins"] = len(netns)
	links, _ := exec.Command("ip", "-o", "link", "show", "master", pn.bridge).Output()
	c["veths on the bridge"] = strings.Count(string(links), "\n")
	ips, _ := filepath.Glob(filepath.Join(pn.dataDir, "*", pn.prefix+"*"))
	c["IP allocations"] = len(ips)
	cg, _ := filepath.Glob("/sys/fs/cgroup/memory/berth/*/")
	c["cgroups"] = len(cg)
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.cmd.Process.Pid))
	c["berthd fds"] = len(fds)
	rootfs, _ := os.ReadDir(filepath.Join(d.dir, "root", "snapshots", "rootfs"))
	c["rootfs dirs"] = len(rootfs)
	layers, _ := os.ReadDir(filepath.Join(d.dir, "root", "snapshots", "layers"))
	c["layer snapshots"] = len(layers)
	blobs, _ := filepath.Glob(filepath.Join(d.dir, "root", "content", "blobs", "*", "*"))
	c["content blobs"] = len(blobs)
	tmp, _ := os.ReadDir(filepath.Join(d.dir, "root", "snapshots", "tmp"))
	c["snapshot temp dirs"] = len(tmp)
	c["state temp files"] = d.countTempFiles()
	c["supervised processes"] = len(d.supervisedPIDs())
	return c
}

// countTempFiles counts atomicfile leftovers (".name.tmp-*") under berthd's
// directories, not looking inside container root filesystems.
func (d *daemon) countTempFiles() int {
	n := 0
	for _, top := range []string{filepath.Join(d.dir, "root"), filepath.Join(d.dir, "run")} {
		filepath.WalkDir(top, func(p string, e os.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if e.IsDir() && (e.Name() == "rootfs" || e.Name() == "layers" || e.Name() == "netns") {
				return filepath.SkipDir
			}
			if strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), ".tmp-") {
				n++
			}
			return nil
		})
	}
	return n
}

// supervisorPID is the pid of the supervisor of d's state dir, or 0 when
// none runs.
func (d *daemon) supervisorPID() int {
	stateDir := filepath.Join(d.dir, "run")
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		args := strings.Split(string(b), "\x00")
		if len(args) > 2 && strings.HasSuffix(args[0], "berth-supervisor") && slices.Contains(args, stateDir) {
			var pid int
			fmt.Sscanf(filepath.Base(filepath.Dir(p)), "%d", &pid)
			return pid
		}
	}
	return 0
}

// supervisedPIDs are the live (not zombie) children of d's supervisor: one
// per ready sandbox's pause and per created or running container.
func (d *daemon) supervisedPIDs() []int {
	sup := d.supervisorPID()
	if sup == 0 {
		return nil
	}
	var pids []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		var state string
		var pid, ppid int
		fmt.Sscanf(string(b), "%d", &pid)
		if _, err := fmt.Sscanf(string(b[i+1:]), " %s %d", &state, &ppid); err != nil {
			continue
		}
		if ppid == sup && state != "Z" {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (c resourceCounts) String() string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, c[k])
	}
	return b.String()
}

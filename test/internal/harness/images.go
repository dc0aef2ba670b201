package harness

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Images the pod tests use, pushed to each test's own registry.
const (
	PauseRepo   = "test/pause:1"
	BusyboxRepo = "test/busybox:1"
)

// Registry is an in-process OCI registry on loopback, counting blob
// downloads so tests can tell whether a pull moved layer bytes.
type Registry struct {
	Host     string // 127.0.0.1:port
	BlobGets atomic.Int64
}

// NewRegistry starts a registry that stops with the test.
func NewRegistry(t testing.TB) *Registry {
	t.Helper()
	r := &Registry{}
	// With the OCI 1.1 referrers API, where signatures (Sigstore bundles) are found.
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(true))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/") {
			r.BlobGets.Add(1)
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.Host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// Push uploads a random image of n layers as repo:tag and returns it.
func (r *Registry) Push(t testing.TB, repo, tag string, layers int) v1.Image {
	t.Helper()
	img, err := random.Image(4096, int64(layers))
	if err != nil {
		t.Fatal(err)
	}
	r.write(t, fmt.Sprintf("%s:%s", repo, tag), img)
	return img
}

// PushImage pushes an image of layers (lowest first) as repo.
func (r *Registry) PushImage(t testing.TB, repo string, layers []v1.Layer, cfg v1.Config) {
	t.Helper()
	r.PushAnnotatedImage(t, repo, layers, cfg, nil)
}

// PushAnnotatedImage is PushImage with annotations on the manifest.
func (r *Registry) PushAnnotatedImage(t testing.TB, repo string, layers []v1.Layer, cfg v1.Config, annotations map[string]string) {
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
	if len(annotations) > 0 {
		img = mutate.Annotations(img, annotations).(v1.Image)
	}
	r.write(t, repo, img)
}

func (r *Registry) write(t testing.TB, repo string, img v1.Image) {
	t.Helper()
	ref, err := name.ParseReference(r.Host+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
}

// Mirror makes d's registry config send pulls of host to this registry,
// with no fallback to the real one.
func (r *Registry) Mirror(t testing.TB, d *Daemon, host string) {
	t.Helper()
	dir := filepath.Join(d.Dir, "certs.d", host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	toml := fmt.Sprintf("server = \"http://%s\"\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", r.Host, r.Host)
	if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
}

// PushPodImages pushes the pause and busybox images the pod tests use.
func (r *Registry) PushPodImages(t testing.TB) {
	t.Helper()
	r.PushImage(t, PauseRepo, []v1.Layer{Layer(t, []TarEntry{{Name: "pause", Mode: 0o755, Body: pauseBinary(t)}})},
		v1.Config{Entrypoint: []string{"/pause"}})
	r.PushImage(t, BusyboxRepo, []v1.Layer{BusyboxLayer(t)}, v1.Config{
		Cmd: []string{"sh"}, Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	})
}

// BusyboxLayer is the busybox image's one layer: the host's static
// busybox, its applets the tests run, and users and groups for them.
func BusyboxLayer(t testing.TB) v1.Layer {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox") // Debian's busybox-static (hack/install-deps.sh)
	if err != nil {
		t.Fatalf("busybox-static is needed: %v", err)
	}
	entries := []TarEntry{
		{Name: "bin/", Dir: true, Mode: 0o755}, {Name: "etc/", Dir: true, Mode: 0o755},
		{Name: "tmp/", Dir: true, Mode: 0o1777}, {Name: "root/", Dir: true, Mode: 0o700},
		{Name: "bin/busybox", Mode: 0o755, Body: bb},
		{Name: "etc/passwd", Mode: 0o644, Body: []byte("root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/false\nnobody:x:65534:65534:nobody:/home:/bin/false\n")},
		{Name: "etc/group", Mode: 0o644, Body: []byte("root:x:0:\nwww-data:x:33:\nextra:x:3000:www-data\nnogroup:x:65534:\n")},
	}
	for _, applet := range []string{"sh", "sleep", "echo", "cat", "id", "ls", "env", "true", "false", "wget", "nc", "httpd", "ps", "grep", "head", "seq", "touch", "yes", "dd", "hostname", "ip", "mount"} {
		entries = append(entries, TarEntry{Name: "bin/" + applet, Linkname: "bin/busybox"})
	}
	return Layer(t, entries)
}

// TarEntry is one file of a test layer.
type TarEntry struct {
	Name     string
	Mode     int64
	Body     []byte
	Linkname string // hard link target when set
	Dir      bool
}

// Layer is an uncompressed layer of entries, in order.
func Layer(t testing.TB, entries []TarEntry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Mode: e.Mode, Size: int64(len(e.Body)), Typeflag: tar.TypeReg}
		switch {
		case e.Dir:
			h.Typeflag, h.Size = tar.TypeDir, 0
		case e.Linkname != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeLink, e.Linkname, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write(e.Body)
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

var (
	pauseOnce sync.Once
	pauseBin  []byte
	pauseErr  error
)

// pauseBinary builds testdata/pause, static, once per test run. By import
// path: the test's working directory is its own package's. Where there is no
// Go toolchain (the test VM runs prebuilt test binaries), $BERTH_TEST_PAUSE
// names a pause binary built beforehand.
func pauseBinary(t testing.TB) []byte {
	t.Helper()
	pauseOnce.Do(func() {
		if p := os.Getenv("BERTH_TEST_PAUSE"); p != "" {
			pauseBin, pauseErr = os.ReadFile(p)
			return
		}
		out := filepath.Join(os.TempDir(), fmt.Sprintf("berth-test-pause-%d", os.Getpid()))
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out,
			"github.com/berth-cri/berth/test/internal/harness/testdata/pause")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			pauseErr = fmt.Errorf("build pause: %w\n%s", err, b)
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

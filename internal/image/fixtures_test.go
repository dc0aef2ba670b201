package image

// Shared fixtures of the image tests: an in-process registry that counts
// and can corrupt or stall blob downloads, image builders, and a Service
// wired to the real registry client and snapshot store in a temp root.

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sirupsen/logrus"

	"github.com/berth-cri/berth/internal/content"
	"github.com/berth-cri/berth/internal/registry"
	"github.com/berth-cri/berth/internal/snapshot"
)

// testRegistry is a registry on 127.0.0.1 (plain HTTP, as the registry
// client uses for loopback) whose blob GETs are counted per digest.
type testRegistry struct {
	host string // 127.0.0.1:port

	mu       sync.Mutex
	blobGets map[string]int           // digest -> GETs of that blob
	corrupt  map[string]bool          // blobs served with one byte changed
	stall    map[string]chan struct{} // blobs whose GET sends part, then waits for the channel
	started  chan string              // digests of stalled GETs, as they begin
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	r := &testRegistry{
		blobGets: map[string]int{},
		corrupt:  map[string]bool{},
		stall:    map[string]chan struct{}{},
		started:  make(chan string, 16),
	}
	inner := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		d := ""
		if i := strings.Index(req.URL.Path, "/blobs/sha256:"); i >= 0 && req.Method == http.MethodGet {
			d = req.URL.Path[i+len("/blobs/"):]
		}
		if d == "" {
			inner.ServeHTTP(w, req)
			return
		}
		r.mu.Lock()
		r.blobGets[d]++
		corrupt, stall := r.corrupt[d], r.stall[d]
		r.mu.Unlock()
		if !corrupt && stall == nil {
			inner.ServeHTTP(w, req)
			return
		}
		rec := httptest.NewRecorder()
		inner.ServeHTTP(rec, req)
		body := rec.Body.Bytes()
		if corrupt && len(body) > 600 {
			body[600] ^= 0xff // in an uncompressed layer: inside the first file's data, still a valid tar
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		if stall == nil {
			w.Write(body)
			return
		}
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		r.started <- d
		select {
		case <-stall:
			w.Write(body[len(body)/2:])
		case <-req.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

func (r *testRegistry) gets(d v1.Hash) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobGets[d.String()]
}

// layerGets sums the GETs of img's layers.
func (r *testRegistry) layerGets(t *testing.T, img v1.Image) int {
	t.Helper()
	n := 0
	for _, d := range layerDigests(t, img) {
		n += r.gets(d)
	}
	return n
}

func (r *testRegistry) setCorrupt(d v1.Hash) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.corrupt[d.String()] = true
}

// setStall makes GETs of d send half the blob and wait for the returned
// channel to close.
func (r *testRegistry) setStall(d v1.Hash) chan struct{} {
	ch := make(chan struct{})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stall[d.String()] = ch
	return ch
}

// ref is the full reference of repo:tag (or repo@digest) on r.
func (r *testRegistry) ref(repoAndObject string) string {
	return r.host + "/" + repoAndObject
}

func (r *testRegistry) push(t *testing.T, repoTag string, img v1.Image) {
	t.Helper()
	ref, err := name.ParseReference(r.ref(repoTag))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
}

func (r *testRegistry) pushIndex(t *testing.T, repoTag string, idx v1.ImageIndex) {
	t.Helper()
	ref, err := name.ParseReference(r.ref(repoTag))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
}

// randomImage is an image of n random gzip layers.
func randomImage(t *testing.T, n int) v1.Image {
	t.Helper()
	img, err := random.Image(2048, int64(n))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// tarOf is a tar of files (name -> content), each followed by 1 KiB of
// padding, so that byte 600 is file data.
func tarOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for n, c := range files {
		data := c + strings.Repeat("x", 1024)
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(data))
	}
	tw.Close()
	return buf.Bytes()
}

// layerOf builds a layer of the given tar with compression "gzip", "zstd"
// or "none".
func layerOf(t *testing.T, tarData []byte, comp string) v1.Layer {
	t.Helper()
	if comp == "none" {
		return static.NewLayer(tarData, types.OCIUncompressedLayer)
	}
	opener := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tarData)), nil }
	l, err := tarball.LayerFromOpener(opener, tarball.WithCompression(compression.Compression(comp)))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// imageOf stacks layers on an empty OCI image with cfg's user.
func imageOf(t *testing.T, user string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.User = user
	cf.Config.Env = []string{"PATH=/bin"}
	cf.Architecture, cf.OS = "amd64", "linux"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func layerDigests(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Hash
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func configDigest(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func manifestDigest(t *testing.T, img interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// testEnv is a Service in a temp root with the real registry client and
// snapshot store.
type testEnv struct {
	root string
	reg  *testRegistry
	snap *snapshot.Store
	svc  *Service
	opts Options
}

func newTestEnv(t *testing.T, reg *testRegistry, mod func(*Options)) *testEnv {
	t.Helper()
	root := t.TempDir()
	e := &testEnv{root: root, reg: reg}
	e.opts = Options{Root: root, PullProgressTimeout: time.Minute, Log: discardLog()}
	if mod != nil {
		mod(&e.opts)
	}
	e.reopen(t)
	return e
}

// reopen builds a new Service on the same root, as a berthd restart does.
func (e *testEnv) reopen(t *testing.T) {
	t.Helper()
	res, err := registry.New(registry.Options{UserAgent: "berth-test"})
	if err != nil {
		t.Fatal(err)
	}
	if e.snap, err = snapshot.Open(filepath.Join(e.root, "snapshots")); err != nil {
		t.Fatal(err)
	}
	// As berthd's stop does: the layers' flush behind the pulls would
	// otherwise outlive the test by up to its quiet time.
	t.Cleanup(e.snap.Flush)
	opts := e.opts
	opts.Resolver, opts.Snapshots = res, e.snap
	if e.svc, err = New(opts); err != nil {
		t.Fatal(err)
	}
}

func (e *testEnv) pull(t *testing.T, ref string) Image {
	t.Helper()
	img, err := e.svc.Pull(context.Background(), ref, nil, "")
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return img
}

func (e *testEnv) snapshots(t *testing.T) int {
	t.Helper()
	l, err := e.snap.List()
	if err != nil {
		t.Fatal(err)
	}
	return len(l)
}

func (e *testEnv) blobs(t *testing.T) int {
	t.Helper()
	n := 0
	if err := e.svc.content.Walk(func(content.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func discardLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

package image

// A registry on 127.0.0.1 that serves exactly the bytes and headers a test
// gives it, to play a hostile or broken registry, plus leak checks.

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/testsupport"
)

type fakeDoc struct {
	mediaType string
	data      []byte
}

type fakeRegistry struct {
	host string
	// done is closed at cleanup: handlers that trickle forever stop.
	done chan struct{}

	mu sync.Mutex
	// docs maps "<repo>/manifests/<tag or digest>" and "blobs/<digest>".
	docs map[string]fakeDoc
	// hook, when set, may answer a request itself (it returns true then).
	hook func(w http.ResponseWriter, req *http.Request) bool
}

func newFakeRegistry(t *testing.T) *fakeRegistry {
	t.Helper()
	f := &fakeRegistry{done: make(chan struct{}), docs: map[string]fakeDoc{}}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(f.done) }) // runs first
	f.host = strings.TrimPrefix(srv.URL, "http://")
	return f
}

func (f *fakeRegistry) serve(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path == "/v2/" {
		return
	}
	f.mu.Lock()
	hook := f.hook
	f.mu.Unlock()
	if hook != nil && hook(w, req) {
		return
	}
	key := strings.TrimPrefix(req.URL.Path, "/v2/")
	if i := strings.Index(key, "/blobs/"); i >= 0 {
		key = key[i+1:]
	}
	f.mu.Lock()
	d, ok := f.docs[key]
	f.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`)
		return
	}
	if d.mediaType != "" {
		w.Header().Set("Content-Type", d.mediaType)
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(d.data)))
	w.Write(d.data)
}

func (f *fakeRegistry) setHook(h func(w http.ResponseWriter, req *http.Request) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = h
}

func (f *fakeRegistry) ref(repoTag string) string { return f.host + "/" + repoTag }

// blob stores data and returns its descriptor.
func (f *fakeRegistry) blob(mediaType string, data []byte) ocispec.Descriptor {
	d := digest.FromBytes(data)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.docs["blobs/"+d.String()] = fakeDoc{data: data}
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}
}

// manifest stores a manifest or index under repo, by digest and, when tag
// is set, by tag, served with the Content-Type contentType.
func (f *fakeRegistry) manifest(repo, tag, contentType string, data []byte) ocispec.Descriptor {
	d := digest.FromBytes(data)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.docs[repo+"/manifests/"+d.String()] = fakeDoc{contentType, data}
	if tag != "" {
		f.docs[repo+"/manifests/"+tag] = fakeDoc{contentType, data}
	}
	return ocispec.Descriptor{MediaType: contentType, Digest: d, Size: int64(len(data))}
}

// fakeImage describes an image to store; the edit hooks may break it.
type fakeImage struct {
	layers     [][]byte // uncompressed tars
	editConfig func(*ocispec.Image)
	rawConfig  []byte // replaces the config JSON when set
	editMan    func(*ocispec.Manifest)
	// contentType the manifest is served with (default: OCI manifest).
	contentType string
}

// image stores im as repo:tag (an OCI manifest of uncompressed layers) and
// returns the manifest's descriptor.
func (f *fakeRegistry) image(t *testing.T, repo, tag string, im fakeImage) ocispec.Descriptor {
	t.Helper()
	cfg := ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config:   ocispec.ImageConfig{Env: []string{"PATH=/bin"}},
		RootFS:   ocispec.RootFS{Type: "layers"},
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	for _, l := range im.layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, digest.FromBytes(l))
		m.Layers = append(m.Layers, f.blob(ocispec.MediaTypeImageLayer, l))
	}
	if im.editConfig != nil {
		im.editConfig(&cfg)
	}
	raw := im.rawConfig
	if raw == nil {
		raw = mustJSON(t, cfg)
	}
	m.Config = f.blob(ocispec.MediaTypeImageConfig, raw)
	if im.editMan != nil {
		im.editMan(&m)
	}
	ct := im.contentType
	if ct == "" {
		ct = ocispec.MediaTypeImageManifest
	}
	return f.manifest(repo, tag, ct, mustJSON(t, m))
}

// index stores an index of children (each for linux/amd64) as repo:tag.
func (f *fakeRegistry) index(t *testing.T, repo, tag string, children ...ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	for _, c := range children {
		c.Platform = amd64
		idx.Manifests = append(idx.Manifests, c)
	}
	return f.manifest(repo, tag, ocispec.MediaTypeImageIndex, mustJSON(t, idx))
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// smallTar is a one-file tar.
func smallTar(t *testing.T, name string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	data := []byte("content of " + name)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(data)
	tw.Close()
	return buf.Bytes()
}

// trickle sends data a byte every interval until it is all sent, the
// client goes away or the test ends.
func (f *fakeRegistry) trickle(w http.ResponseWriter, req *http.Request, data []byte, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := range data {
		select {
		case <-tick.C:
		case <-req.Context().Done():
			return
		case <-f.done:
			return
		}
		if _, err := w.Write(data[i : i+1]); err != nil {
			return
		}
		w.(http.Flusher).Flush()
	}
}

// assertNothingLeft checks that no record of ref, snapshot, blob, ingest
// file or extraction directory is left (extractions abandoned by a
// cancelled pull wind down on their own: polled).
func (e *testEnv) assertNothingLeft(t *testing.T, ref string) {
	t.Helper()
	if _, err := e.svc.Get(ref); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("record of %s after a failed pull: %v", ref, err)
	}
	dirs := []string{filepath.Join(e.root, "content", "ingest"), filepath.Join(e.root, "snapshots", "tmp")}
	testsupport.PollUntil(t, "ingest and extraction directories are empty", 10*time.Second, func() bool {
		for _, d := range dirs {
			if es, _ := os.ReadDir(d); len(es) > 0 {
				return false
			}
		}
		return true
	})
	if s, b := e.snapshots(t), e.blobs(t); s != 0 || b != 0 {
		t.Errorf("%d snapshots and %d blobs left", s, b)
	}
}
